"""The web dashboard the queen serves at `/`: login sessions, live cluster events, static files.

It owns no business logic: its pages call the same /v1 and /gdpr routes the CLI uses, with
the logged-in key's role (queen.auth checks the session cookie like a bearer key). It must
not be imported by anything but queen.app.
"""
