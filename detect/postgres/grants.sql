-- What a spraywatch fleet's database roles may do. Run as the database's
-- owner (the judge's role) or a superuser, after the judge's first start
-- has created the tables:
--   psql -v ON_ERROR_STOP=1 -d spraywatch -f grants.sql
-- Agents insert their attempt rows and line findings and keep their own
-- positions and clocks;
-- they cannot read the fleet's attempts, incidents or alerts, nor change
-- what another node wrote. The judge owns the tables: it reads every row,
-- updates incidents, cursors and the outbox, and deletes old rows.
GRANT USAGE ON SCHEMA public TO spraywatch_agent;
GRANT INSERT ON attempts, findings TO spraywatch_agent;
GRANT SELECT, INSERT, UPDATE ON positions, nodes, node_clocks TO spraywatch_agent;
-- Analysts (alerts, explain, the forensic views) only read.
GRANT USAGE ON SCHEMA public TO spraywatch_reader;
GRANT SELECT ON ALL TABLES IN SCHEMA public TO spraywatch_reader;
