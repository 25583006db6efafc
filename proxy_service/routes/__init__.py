"""HTTP routes: thin handlers that authenticate, convert, call upstream and meter."""
