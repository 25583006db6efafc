"""OpenAI's Chat Completions as the upstream speaks it, and the routes passed through to it:
chunks.py, tool_calls.py and message.py read chat chunks and answers (shared by every
translator), usage.py and estimate.py turn usage into records (and estimate missing usage),
stream_tap.py watches a passed-through stream, upstream_errors.py reads error bodies,
embeddings.py and model_list.py shape the embeddings record and the model lists. Pure."""
