"""redis-py clients (sync and asyncio) with an outage switch: while :class:`_common.Outage` is
on, each command goes to a client of the outage's dead port instead, and fails there with
redis-py's own ``ConnectionError``, as it would with the redis-server down."""

from __future__ import annotations

from typing import Any, cast

import redis
import redis.asyncio
from _common import Outage
from redis.backoff import NoBackoff
from redis.retry import Retry


class SwitchableRedis(redis.Redis):
    outage: Outage
    dead: redis.Redis

    def execute_command(self, *args: Any, **options: Any) -> Any:
        if self.outage.on.is_set():
            return self.dead.execute_command(*args, **options)
        return super().execute_command(*args, **options)


class SwitchableAsyncRedis(redis.asyncio.Redis):
    outage: Outage
    dead: redis.asyncio.Redis

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        if self.outage.on.is_set():
            return await self.dead.execute_command(*args, **options)
        return await super().execute_command(*args, **options)


def client(url: str, outage: Outage) -> SwitchableRedis:
    made = cast(SwitchableRedis, SwitchableRedis.from_url(url))  # from_url makes a cls
    made.outage = outage
    made.dead = redis.Redis.from_url(outage.dead_url, retry=Retry(NoBackoff(), 0))
    return made


def async_client(url: str, outage: Outage) -> SwitchableAsyncRedis:
    made = cast(SwitchableAsyncRedis, SwitchableAsyncRedis.from_url(url))
    made.outage = outage
    made.dead = redis.asyncio.Redis.from_url(outage.dead_url, retry=Retry(NoBackoff(), 0))
    return made
