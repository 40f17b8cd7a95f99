-- The run record of `nas-core`, many runs in one database: every table carries
-- the run's name. Times are seconds since the Unix epoch of the database clock.
CREATE TABLE runs (
    name       TEXT PRIMARY KEY,
    created_at DOUBLE PRECISION NOT NULL DEFAULT extract(epoch FROM now())
);
CREATE TABLE meta (
    run   TEXT NOT NULL REFERENCES runs(name) ON DELETE CASCADE,
    key   TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (run, key)
);
CREATE TABLE trials (
    id          BIGSERIAL PRIMARY KEY,
    run         TEXT NOT NULL REFERENCES runs(name) ON DELETE CASCADE,
    stage       TEXT NOT NULL CHECK (stage IN ('search', 'final')),
    step        BIGINT NOT NULL,
    proposer    TEXT NOT NULL,
    status      TEXT NOT NULL
                CHECK (status IN ('pending', 'running', 'done', 'invalid', 'diverged', 'failed')),
    name        TEXT,
    source      TEXT NOT NULL,
    hash        TEXT NOT NULL,
    parent      TEXT,
    outcome     TEXT NOT NULL,
    note        TEXT,
    params      BIGINT,
    flops       BIGINT,
    epochs      BIGINT NOT NULL,
    propose_ms  DOUBLE PRECISION NOT NULL,
    telemetry   TEXT NOT NULL DEFAULT '[]',
    accuracy    DOUBLE PRECISION,
    top5        DOUBLE PRECISION,
    test_loss   DOUBLE PRECISION,
    train_s     DOUBLE PRECISION,
    error       TEXT,
    runs        BIGINT NOT NULL DEFAULT 0,
    created_at  DOUBLE PRECISION NOT NULL,
    started_at  DOUBLE PRECISION,
    finished_at DOUBLE PRECISION,
    worker      TEXT,
    lease_until DOUBLE PRECISION
);
CREATE INDEX trials_queue ON trials (run, status, id);
CREATE INDEX trials_by_hash ON trials (run, hash);
CREATE TABLE attempts (
    id                BIGSERIAL PRIMARY KEY,
    run               TEXT NOT NULL REFERENCES runs(name) ON DELETE CASCADE,
    step              BIGINT NOT NULL,
    proposer          TEXT NOT NULL,
    idx               BIGINT NOT NULL,
    round             TEXT NOT NULL,
    outcome           TEXT NOT NULL,
    raw               TEXT NOT NULL,
    source            TEXT,
    diagnostics       TEXT,
    latency_ms        DOUBLE PRECISION NOT NULL,
    prompt_tokens     BIGINT,
    completion_tokens BIGINT,
    retries           BIGINT NOT NULL,
    trial             BIGINT REFERENCES trials(id) ON DELETE CASCADE,
    created_at        DOUBLE PRECISION NOT NULL
);
CREATE INDEX attempts_by_run ON attempts (run, id);
CREATE TABLE workers (
    run        TEXT NOT NULL REFERENCES runs(name) ON DELETE CASCADE,
    name       TEXT NOT NULL,
    slots      BIGINT NOT NULL,
    seen_until DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (run, name)
);
