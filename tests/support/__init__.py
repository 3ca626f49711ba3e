"""Test support: the model stub that imitates the OpenAI Responses and Anthropic Messages APIs."""
