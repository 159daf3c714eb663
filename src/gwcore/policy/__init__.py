"""Policy: JWT/JWKS verification, claim ACLs, rate limits, client IP, header transforms.

Every piece is pure (time is an argument) and usable alone.
"""
