"""Anthropic Messages on a Chat Completions upstream: request.py (Messages -> chat), response.py
(chat.completion -> Message), stream.py (chat chunks -> Messages SSE), errors.py (upstream
errors -> Anthropic's shape and statuses), token_count.py (the local count_tokens estimate).
Pure functions; the conversion rules and their sources are in the modules' docstrings."""
