"""Connects with psycopg 3's defaults (libpq: sslmode=prefer, channel_binding=prefer) and prints current_user."""
import sys

import psycopg

with psycopg.connect(sys.argv[1]) as conn:
    print(conn.execute("SELECT current_user").fetchone()[0])
