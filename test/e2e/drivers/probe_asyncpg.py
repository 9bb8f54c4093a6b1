"""Connects with asyncpg's defaults (ssl='prefer') and prints current_user."""
import asyncio
import sys

import asyncpg


async def main(host, port, user, password, database):
    conn = await asyncpg.connect(host=host, port=int(port), user=user, password=password, database=database)
    print(await conn.fetchval("SELECT current_user"))
    await conn.close()


asyncio.run(main(*sys.argv[1:6]))
