"""The dashboard (/ui) and the key holders' page (/me): server-rendered pages over the same
operations and reads as the /admin API, behind Redis sessions, CSRF tokens and a strict CSP."""
