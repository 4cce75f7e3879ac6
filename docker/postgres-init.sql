-- First start of the postgres service: the Dagster instance's database beside the events
-- database (POSTGRES_DB). `chainlake db migrate` creates the events schema.
CREATE DATABASE dagster OWNER chainlake;
