-- Multi-fidelity search (ASHA): a trial's rung, the trial it continues from its
-- checkpoint, and the checkpoints themselves, kept in the database so that every
-- worker that reaches the store reaches them.
ALTER TABLE trials ADD COLUMN rung BIGINT NOT NULL DEFAULT 0;
ALTER TABLE trials ADD COLUMN continues BIGINT REFERENCES trials(id) ON DELETE CASCADE;
CREATE TABLE checkpoints (
    trial      BIGINT PRIMARY KEY REFERENCES trials(id) ON DELETE CASCADE,
    run        TEXT NOT NULL REFERENCES runs(name) ON DELETE CASCADE,
    bytes      BYTEA NOT NULL,
    created_at DOUBLE PRECISION NOT NULL
);
CREATE INDEX checkpoints_by_run ON checkpoints (run, trial);
