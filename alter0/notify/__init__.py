"""Notifications: one durable event feed (job outcomes, closed tasks, workers down/up) and its subscribers
(outgoing webhooks, chat channels), every delivery through the channels' outbox."""
