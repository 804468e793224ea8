"""The dealership's data behind Sarah's tools: inventory search and test-drive bookings (PostgreSQL).

`Dealership` owns a small asyncpg pool, opened on first use so that a database outage at the
start of a call does not stop the agent from talking; each method raises `DealershipError`
with a sentence the agent can pass on when something cannot be done.
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

import asyncpg

from core.log import get_logger

log = get_logger(__name__)

MAX_RESULTS = 5
# A test drive holds its car this long: another booking of the car must not overlap it.
TEST_DRIVE_LENGTH = timedelta(minutes=45)
# What customers say for a make -> the make as the inventory spells it.
MAKE_ALIASES = {
    "chevy": "Chevrolet",
    "chev": "Chevrolet",
    "vw": "Volkswagen",
    "volkswagon": "Volkswagen",
    "merc": "Mercedes-Benz",
    "mercedes": "Mercedes-Benz",
    "mercedesbenz": "Mercedes-Benz",
    "beemer": "BMW",
    "bimmer": "BMW",
    "caddy": "Cadillac",
    "dodgeram": "Ram",
    "landy": "Land Rover",
    "hyundia": "Hyundai",
    "toyata": "Toyota",
}


def canonical_make(make: str) -> str:
    """The inventory's spelling of a make as a customer says it ("Chevy" -> "Chevrolet")."""
    key = "".join(c for c in make.lower() if c.isalnum())
    return MAKE_ALIASES.get(key, make.strip())


class DealershipError(Exception):
    """Something the customer should be told about (message is safe to say aloud)."""


@dataclass(frozen=True)
class Vehicle:
    stock_number: str
    vin: str
    year: int
    make: str
    model: str
    trim: str
    body_style: str
    condition: str
    exterior_color: str
    mileage: int
    price: Decimal
    fuel: str
    features: str

    @property
    def title(self) -> str:
        return f"{self.year} {self.make} {self.model} {self.trim}".strip()

    def describe(self) -> str:
        """One line for the LLM: everything it may quote about this car."""
        miles = "new" if self.condition == "new" else f"{self.mileage:,} miles"
        return (
            f"stock {self.stock_number}: {self.title}, {self.condition}, {self.exterior_color}, "
            f"{miles}, {self.fuel}, ${self.price:,.0f}; {self.features}"
        )


@dataclass(frozen=True)
class Booking:
    reference: str
    vehicle: Vehicle
    scheduled_at: datetime
    customer_name: str
    customer_phone: str
    already_booked: bool  # True when this call had booked the same slot before (a retry)


_VEHICLE_COLUMNS = (
    "stock_number, vin, year, make, model, trim, body_style, condition, exterior_color, "
    "mileage, price, fuel, features"
)


def booking_reference(vin: str, scheduled_at: datetime, length: int = 6) -> str:
    """Short, speakable and stable for one slot, so a retried booking gets the same one; a
    longer one (`length`) when the short one is already another booking's."""
    digest = hashlib.sha256(f"{vin}|{scheduled_at.isoformat()}".encode()).hexdigest()
    return "TD-" + digest[:length].upper()


class Dealership:
    """Inventory and bookings for one agent process. Call `aclose()` when the job ends."""

    def __init__(self, dsn: str, *, max_connections: int = 3) -> None:
        self._dsn = dsn
        self._max = max_connections
        self._pool: asyncpg.Pool | None = None
        self._lock = asyncio.Lock()

    async def _get_pool(self) -> asyncpg.Pool:
        async with self._lock:
            if self._pool is None:
                try:
                    self._pool = await asyncpg.create_pool(
                        self._dsn, min_size=0, max_size=self._max, timeout=5, command_timeout=5
                    )
                except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
                    log.error("dealership_db_unreachable", error=type(exc).__name__)
                    raise DealershipError(
                        "Our inventory system is not answering right now."
                    ) from exc
            return self._pool

    async def aclose(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    async def search(
        self,
        *,
        make: str | None = None,
        model: str | None = None,
        year: int | None = None,
        min_price: float | None = None,
        max_price: float | None = None,
        limit: int = MAX_RESULTS,
    ) -> list[Vehicle]:
        """Available vehicles matching every given filter (case-insensitive), cheapest first."""
        where = ["status = 'available'"]
        args: list[object] = []

        def arg(value: object) -> str:
            args.append(value)
            return f"${len(args)}"

        if make:
            # "Chevy" finds Chevrolet; spacing and dashes do not matter ("Mercedes Benz")
            where.append(
                "regexp_replace(lower(make), '[^a-z0-9]', '', 'g') = "
                f"regexp_replace(lower({arg(canonical_make(make))}), '[^a-z0-9]', '', 'g')"
            )
        if model:
            # "F150" and "f-150" should find the F-150
            where.append(
                "regexp_replace(lower(model), '[^a-z0-9]', '', 'g') = "
                f"regexp_replace(lower({arg(model.strip())}), '[^a-z0-9]', '', 'g')"
            )
        if year:
            where.append(f"year = {arg(int(year))}")
        if min_price is not None:
            where.append(f"price >= {arg(Decimal(str(min_price)))}")
        if max_price is not None:
            where.append(f"price <= {arg(Decimal(str(max_price)))}")
        sql = (
            f"SELECT {_VEHICLE_COLUMNS} FROM inventory WHERE {' AND '.join(where)} "
            f"ORDER BY price, year DESC LIMIT {arg(max(1, min(limit, 20)))}"
        )
        rows = await self._fetch(sql, *args)
        return [Vehicle(**dict(r)) for r in rows]

    async def vehicle(self, stock_number: str) -> Vehicle | None:
        rows = await self._fetch(
            f"SELECT {_VEHICLE_COLUMNS}, status FROM inventory WHERE upper(stock_number) = upper($1)",
            stock_number.strip(),
        )
        if not rows:
            return None
        row = dict(rows[0])
        if row.pop("status") != "available":
            raise DealershipError(f"Stock number {stock_number} is no longer available.")
        return Vehicle(**row)

    async def book_test_drive(
        self,
        *,
        call_id: str,
        stock_number: str,
        scheduled_at: datetime,
        customer_name: str,
        customer_phone: str,
    ) -> Booking:
        """Store a test drive. Idempotent for the same call and slot; a slot taken by another
        call raises `DealershipError`."""
        vehicle = await self.vehicle(stock_number)
        if vehicle is None:
            raise DealershipError(f"I could not find stock number {stock_number} on our lot.")
        pool = await self._get_pool()
        try:
            async with pool.acquire() as conn, conn.transaction():
                # One booking of a car at a time: overlaps are judged under this lock.
                await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", vehicle.vin)
                mine = await conn.fetchval(
                    "SELECT reference FROM test_drives WHERE vin = $1 AND scheduled_at = $2 "
                    "AND call_id = $3",
                    vehicle.vin,
                    scheduled_at,
                    call_id,
                )
                inserted = None
                reference = mine
                if mine is None:
                    clash = await conn.fetchval(
                        """SELECT scheduled_at FROM test_drives
                           WHERE vin = $1 AND status = 'booked'
                             AND scheduled_at > $2::timestamptz - $3::interval
                             AND scheduled_at < $2::timestamptz + $3::interval
                           LIMIT 1""",
                        vehicle.vin,
                        scheduled_at,
                        TEST_DRIVE_LENGTH,
                    )
                    if clash is not None:
                        raise DealershipError(
                            "This car is already booked for a test drive around that time; "
                            "please pick a time at least 45 minutes apart from it."
                        )
                    reference = await _free_reference(conn, vehicle.vin, scheduled_at)
                    inserted = await conn.fetchval(
                        """INSERT INTO test_drives
                               (vin, scheduled_at, call_id, customer_name, customer_phone,
                                reference)
                           VALUES ($1, $2, $3, $4, $5, $6)
                           RETURNING reference""",
                        vehicle.vin,
                        scheduled_at,
                        call_id,
                        customer_name,
                        customer_phone,
                        reference,
                    )
        except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
            log.error("test_drive_write_failed", call_id=call_id, error=type(exc).__name__)
            raise DealershipError("I could not save the booking just now.") from exc
        assert reference is not None
        log.info(
            "test_drive_booked", call_id=call_id, reference=reference, new=inserted is not None
        )
        return Booking(
            reference=reference,
            vehicle=vehicle,
            scheduled_at=scheduled_at,
            customer_name=customer_name,
            customer_phone=customer_phone,
            already_booked=inserted is None,
        )

    async def _fetch(self, sql: str, *args: object) -> list[asyncpg.Record]:
        pool = await self._get_pool()
        try:
            return await pool.fetch(sql, *args)
        except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
            log.error("dealership_query_failed", error=type(exc).__name__)
            raise DealershipError("Our inventory system is not answering right now.") from exc


async def _free_reference(conn: asyncpg.Connection, vin: str, scheduled_at: datetime) -> str:
    """The slot's reference, longer until no other booking has it (they never collide)."""
    for length in range(6, 65, 2):
        reference = booking_reference(vin, scheduled_at, length)
        if not await conn.fetchval("SELECT 1 FROM test_drives WHERE reference = $1", reference):
            return reference
    raise DealershipError("I could not save the booking just now.")
