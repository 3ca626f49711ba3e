#!/bin/sh
# The bench's executor for the long-generation phase: print the prompt back (like cat); a prompt that
# contains "[long]" first sleeps PIPELINE_LONG_SEC seconds (default 30).
input=$(cat)
case "$input" in
  *"[long]"*) sleep "${PIPELINE_LONG_SEC:-30}" ;;
esac
printf '%s\n' "$input"
