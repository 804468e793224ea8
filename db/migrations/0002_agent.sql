-- The agent's data: the dealership's inventory (with a seeded sample lot) and the test drives
-- Sarah books. Natural keys: a vehicle by VIN (and its stock number), a test drive by the
-- vehicle and its slot, so a retried booking writes once (ON CONFLICT).

CREATE TABLE inventory (
    vin            text PRIMARY KEY CHECK (length(vin) = 17),
    stock_number   text NOT NULL UNIQUE,
    year           int NOT NULL CHECK (year BETWEEN 1980 AND 2100),
    make           text NOT NULL,
    model          text NOT NULL,
    trim           text NOT NULL DEFAULT '',
    body_style     text NOT NULL,
    condition      text NOT NULL CHECK (condition IN ('new', 'used', 'certified')),
    exterior_color text NOT NULL,
    mileage        int NOT NULL CHECK (mileage >= 0),
    price          numeric(10, 2) NOT NULL CHECK (price > 0),
    fuel           text NOT NULL,
    status         text NOT NULL DEFAULT 'available' CHECK (status IN ('available', 'on_hold', 'sold')),
    features       text NOT NULL DEFAULT '',
    updated_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX inventory_make_model_idx ON inventory (lower(make), lower(model));
CREATE INDEX inventory_price_idx ON inventory (price) WHERE status = 'available';

-- One slot per vehicle: the same call booking the same slot again is a no-op; another call
-- asking for a taken slot is told so.
CREATE TABLE test_drives (
    vin            text NOT NULL REFERENCES inventory (vin),
    scheduled_at   timestamptz NOT NULL,
    call_id        text NOT NULL,
    customer_name  text NOT NULL,
    customer_phone text NOT NULL,
    reference      text NOT NULL UNIQUE,
    status         text NOT NULL DEFAULT 'booked' CHECK (status IN ('booked', 'cancelled', 'completed')),
    created_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (vin, scheduled_at)
);
CREATE INDEX test_drives_call_idx ON test_drives (call_id);

-- A sample lot so a fresh install can answer questions; real inventory feeds replace it.
INSERT INTO inventory (vin, stock_number, year, make, model, trim, body_style, condition,
                       exterior_color, mileage, price, fuel, status, features)
VALUES
    ('XK2DEG0D9PCF43ESF', 'CME24101', 2024, 'Toyota', 'Camry', 'SE', 'sedan', 'new', 'Midnight Black', 12, 28995.00, 'gasoline', 'available', 'Apple CarPlay, adaptive cruise, blind-spot monitor'),
    ('4DHRD2DRCJV3KHWMG', 'CME22102', 2022, 'Toyota', 'Camry', 'LE', 'sedan', 'used', 'Celestial Silver', 31250, 22490.00, 'gasoline', 'available', 'backup camera, lane departure alert'),
    ('N0GEDP84X660WSMSF', 'CME23103', 2023, 'Toyota', 'RAV4', 'XLE Hybrid', 'suv', 'certified', 'Blueprint', 18420, 33750.00, 'hybrid', 'available', 'AWD, power liftgate, heated seats'),
    ('W8Y5VEH93LYK83CEX', 'CME24104', 2024, 'Toyota', 'Tacoma', 'TRD Off-Road', 'truck', 'new', 'Army Green', 8, 43900.00, 'gasoline', 'available', '4x4, crawl control, tow package'),
    ('YZ86EFU7EDW5V1ZB6', 'CME21105', 2021, 'Toyota', 'Corolla', 'LE', 'sedan', 'used', 'Super White', 44800, 17995.00, 'gasoline', 'available', 'backup camera, Bluetooth'),
    ('ZLH8DPVJS228FL52U', 'CME24106', 2024, 'Honda', 'Civic', 'Sport', 'sedan', 'new', 'Rallye Red', 5, 26450.00, 'gasoline', 'available', 'Apple CarPlay, sport pedals'),
    ('J4U3Z1RKFMKRRA8MT', 'CME22107', 2022, 'Honda', 'CR-V', 'EX-L', 'suv', 'certified', 'Lunar Silver', 27310, 29980.00, 'gasoline', 'available', 'leather, sunroof, AWD'),
    ('VAK30XJ9D62222G72', 'CME23108', 2023, 'Honda', 'Accord', 'EX', 'sedan', 'used', 'Platinum White Pearl', 15920, 27400.00, 'gasoline', 'available', 'wireless CarPlay, heated seats'),
    ('DNEP5LHYDGAKG0BEP', 'CME20109', 2020, 'Honda', 'Odyssey', 'EX-L', 'minivan', 'used', 'Modern Steel', 52140, 26750.00, 'gasoline', 'on_hold', '8 seats, rear entertainment, power sliding doors'),
    ('1KTZ07HH8677WFKGY', 'CME24110', 2024, 'Ford', 'F-150', 'XLT', 'truck', 'new', 'Oxford White', 15, 52680.00, 'gasoline', 'available', '4x4, 3.5L EcoBoost, trailer tow package'),
    ('T7LBP0KBWFT0LZR9Y', 'CME21111', 2021, 'Ford', 'F-150', 'Lariat', 'truck', 'used', 'Agate Black', 38900, 41500.00, 'gasoline', 'available', 'leather, panoramic roof, 4x4'),
    ('RNS2RN8ZBBU7TNZ5Z', 'CME23112', 2023, 'Ford', 'Mustang', 'GT', 'coupe', 'used', 'Race Red', 9870, 39900.00, 'gasoline', 'available', '5.0L V8, 6-speed manual'),
    ('0FRGR7NYP7A7ZFH1N', 'CME22113', 2022, 'Ford', 'Escape', 'SE', 'suv', 'used', 'Carbonized Gray', 24560, 21995.00, 'gasoline', 'available', 'AWD, SYNC 3'),
    ('7M4YF262FLLJBK6K7', 'CME23114', 2023, 'Ford', 'Mustang Mach-E', 'Premium', 'suv', 'certified', 'Star White', 12300, 39850.00, 'electric', 'available', 'extended range battery, heated wheel'),
    ('ZKJBAGJ4NPBTPV9SX', 'CME24115', 2024, 'Chevrolet', 'Silverado 1500', 'LT', 'truck', 'new', 'Summit White', 20, 49995.00, 'gasoline', 'available', 'crew cab, 4WD, 5.3L V8'),
    ('T3JDZ639JK9B5MAKM', 'CME22116', 2022, 'Chevrolet', 'Equinox', 'LT', 'suv', 'used', 'Mosaic Black', 29870, 21450.00, 'gasoline', 'available', 'remote start, Apple CarPlay'),
    ('K7HDX7GDSNUCG95BE', 'CME23117', 2023, 'Chevrolet', 'Bolt EUV', 'Premier', 'hatchback', 'used', 'Bright Blue', 14200, 24900.00, 'electric', 'available', 'Super Cruise, DC fast charging'),
    ('5X99NU5979STN5J3H', 'CME19118', 2019, 'Chevrolet', 'Tahoe', 'LT', 'suv', 'used', 'Shadow Gray', 67900, 36800.00, 'gasoline', 'sold', '3rd row, tow package'),
    ('25XES4EPWHK0KTJ6R', 'CME23119', 2023, 'Tesla', 'Model 3', 'Long Range', 'sedan', 'used', 'Pearl White', 18900, 33900.00, 'electric', 'available', 'AWD, Autopilot, glass roof'),
    ('G28LRL492Y3NZXF0B', 'CME22120', 2022, 'Tesla', 'Model Y', 'Long Range', 'suv', 'used', 'Midnight Silver', 26750, 36500.00, 'electric', 'available', 'AWD, 7 seats, Autopilot'),
    ('Y65B1YV9EHRGFTUCM', 'CME24121', 2024, 'Hyundai', 'Tucson', 'SEL', 'suv', 'new', 'Amazon Gray', 7, 31890.00, 'gasoline', 'available', 'AWD, 10.25-inch display'),
    ('UJ4T2K98XFUDM4EUB', 'CME23122', 2023, 'Hyundai', 'Ioniq 5', 'SE', 'suv', 'used', 'Gravity Gold', 11400, 35990.00, 'electric', 'available', 'ultra-fast charging, Highway Driving Assist'),
    ('FTFRETH6AY3UJCSHL', 'CME21123', 2021, 'Hyundai', 'Elantra', 'SEL', 'sedan', 'used', 'Intense Blue', 36210, 16995.00, 'gasoline', 'available', 'Android Auto, blind-spot warning'),
    ('TDMNWWPV59MUZBTCA', 'CME24124', 2024, 'Kia', 'Telluride', 'EX', 'suv', 'new', 'Wolf Gray', 10, 42990.00, 'gasoline', 'available', '3rd row, captain''s chairs, AWD'),
    ('B9N97S5G4829WPRYN', 'CME22125', 2022, 'Kia', 'Sorento', 'S', 'suv', 'used', 'Snow White Pearl', 28640, 27300.00, 'gasoline', 'available', '3rd row, AWD'),
    ('J2ZDJAET4LDF19VSV', 'CME23126', 2023, 'Subaru', 'Outback', 'Premium', 'wagon', 'certified', 'Autumn Green', 16780, 29450.00, 'gasoline', 'available', 'symmetrical AWD, EyeSight'),
    ('C6MLU5AT0YXSCWPZM', 'CME22127', 2022, 'Subaru', 'Forester', 'Sport', 'suv', 'used', 'Horizon Blue', 21950, 27800.00, 'gasoline', 'available', 'AWD, X-Mode'),
    ('AY1F7U9NS9AFTFK2C', 'CME23128', 2023, 'Nissan', 'Rogue', 'SV', 'suv', 'used', 'Champagne Silver', 19800, 25600.00, 'gasoline', 'available', 'ProPILOT Assist, AWD'),
    ('2BWWRFK1X8KVKC949', 'CME22129', 2022, 'Jeep', 'Wrangler', 'Sahara', 'suv', 'used', 'Sarge Green', 23500, 38900.00, 'gasoline', 'available', '4x4, removable hardtop'),
    ('J9BRFBCJ0G15DBS8T', 'CME21130', 2021, 'BMW', '3 Series', '330i xDrive', 'sedan', 'certified', 'Alpine White', 29400, 31900.00, 'gasoline', 'available', 'AWD, premium package, heated seats'),
    ('A6E9FE7TETSPR681E', 'CME23131', 2023, 'Mazda', 'CX-5', 'Carbon Edition', 'suv', 'new', 'Polymetal Gray', 9, 33200.00, 'gasoline', 'available', 'AWD, Bose audio'),
    ('7VCNEKYTWJA7D8UGP', 'CME22132', 2022, 'Ram', '1500', 'Big Horn', 'truck', 'used', 'Granite Crystal', 33400, 37450.00, 'gasoline', 'available', 'crew cab, 4x4, 5.7L HEMI')
ON CONFLICT (vin) DO NOTHING;
