"""What Sarah can say is true: makes by their common names, no overlapping test drives of one
car, booking references that never collide (real PostgreSQL, the seeded lot)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import asyncpg
import pytest

from agent.dealership import Dealership, DealershipError, booking_reference, canonical_make
from core.models import new_call_id

TZ = ZoneInfo("America/New_York")


@pytest.fixture
async def dealership(pg_dsn: str) -> AsyncIterator[Dealership]:
    d = Dealership(pg_dsn)
    yield d
    await d.aclose()


def slot(days: int, hour: int, minute: int = 0) -> datetime:
    day = datetime.now(TZ).date() + timedelta(days=days)
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=TZ)


@pytest.mark.parametrize(
    ("said", "make"),
    [("Chevy", "Chevrolet"), ("chevy", "Chevrolet"), ("VW", "Volkswagen"), ("Honda", "Honda")],
)
def test_common_names_of_makes(said: str, make: str) -> None:
    assert canonical_make(said) == make


async def test_chevy_finds_chevrolet(dealership: Dealership) -> None:
    found = await dealership.search(make="Chevy")
    assert found and {v.make for v in found} == {"Chevrolet"}
    assert [v.stock_number for v in found] == [
        v.stock_number for v in await dealership.search(make="chevrolet")
    ]


async def test_overlapping_test_drives_of_one_car_are_refused(
    dealership: Dealership, pg_dsn: str
) -> None:
    (car,) = (await dealership.search(make="Toyota", model="Tacoma"))[:1]
    first_call, second_call = new_call_id(), new_call_id()
    at = slot(200, 10) + timedelta(minutes=7 * (hash(first_call) % 50))  # a slot of its own
    booked = await dealership.book_test_drive(
        call_id=first_call, stock_number=car.stock_number, scheduled_at=at,
        customer_name="Ana", customer_phone="5550100",
    )  # fmt: skip
    again = await dealership.book_test_drive(
        call_id=first_call, stock_number=car.stock_number, scheduled_at=at,
        customer_name="Ana", customer_phone="5550100",
    )  # fmt: skip
    assert again.reference == booked.reference and again.already_booked  # a retry
    for other in (at, at + timedelta(minutes=20), at - timedelta(minutes=30)):
        with pytest.raises(DealershipError, match="already booked"):
            await dealership.book_test_drive(
                call_id=second_call, stock_number=car.stock_number, scheduled_at=other,
                customer_name="Bo", customer_phone="5550101",
            )  # fmt: skip
    later = await dealership.book_test_drive(
        call_id=second_call, stock_number=car.stock_number, scheduled_at=at + timedelta(hours=1),
        customer_name="Bo", customer_phone="5550101",
    )  # fmt: skip
    assert later.reference != booked.reference
    conn = await asyncpg.connect(pg_dsn)
    try:
        await conn.execute(
            "DELETE FROM test_drives WHERE call_id = ANY($1)", [first_call, second_call]
        )
    finally:
        await conn.close()


async def test_booking_references_never_collide(dealership: Dealership, pg_dsn: str) -> None:
    (car,) = (await dealership.search(make="Honda", model="Civic"))[:1]
    call_id = new_call_id()
    at = slot(210, 11) + timedelta(minutes=7 * (hash(call_id) % 50))
    short = booking_reference(car.vin, at)
    conn = await asyncpg.connect(pg_dsn)
    try:
        # another booking (another car, another day) already holds this slot's short reference
        other_vin = await conn.fetchval(
            "SELECT vin FROM inventory WHERE vin <> $1 LIMIT 1", car.vin
        )
        await conn.execute(
            "INSERT INTO test_drives (vin, scheduled_at, call_id, customer_name, customer_phone,"
            " reference) VALUES ($1, $2, 'other', 'X', '5550000', $3)",
            other_vin, at + timedelta(days=1), short,
        )  # fmt: skip
        booked = await dealership.book_test_drive(
            call_id=call_id, stock_number=car.stock_number, scheduled_at=at,
            customer_name="Cy", customer_phone="5550102",
        )  # fmt: skip
        assert booked.reference != short and booked.reference.startswith(short)
        await conn.execute(
            "DELETE FROM test_drives WHERE reference = ANY($1)", [short, booked.reference]
        )
    finally:
        await conn.close()


class SlowDealership(Dealership):
    """The database answers, but slowly (a stalled connection)."""

    async def search(self, **kw: object) -> list:  # type: ignore[override]
        await asyncio.sleep(1.4)
        return await super().search(**kw)  # type: ignore[arg-type]


async def test_a_slow_tool_speaks_a_filler(pg_dsn: str) -> None:
    from livekit.agents import AgentSession

    from agent.sarah import FILLER, Sarah
    from core.settings import RecordingConsent
    from tests.agent.fake_llm import Call, Say, ScriptedLLM

    slow = SlowDealership(pg_dsn)
    llm = ScriptedLLM(Call("search_inventory", {"make": "Toyota"}), Say("We have several."))
    said: list[str] = []
    async with AgentSession(llm=llm, vad=None, turn_handling={"turn_detection": None}) as session:
        sarah = Sarah(call_id=new_call_id(), dealership=slow, signals=_NoSignals(),
                      consent_policy=RecordingConsent.OFF, timezone=TZ)  # fmt: skip
        await session.start(sarah)
        session.on("speech_created", lambda ev: said.append(ev.source))
        result = await session.run(user_input="What Toyotas do you have?")
        result.expect.contains_function_call(name="search_inventory")
    await slow.aclose()
    assert sarah.fillers == 1 and "say" in said
    assert FILLER not in [i.text_content for i in llm.requests[-1].items if i.type == "message"]


class _NoSignals:
    def send(self, name: str, payload: object) -> None:
        pass
