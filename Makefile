# FlowFabric PostgreSQL backend. `make help` lists the targets.

PG_ADMIN_URL ?= postgres://postgres@127.0.0.1:5432/postgres
# The database the sqlx macros check queries against while compiling online.
DEV_DB       ?= ff_dev
DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/$(DEV_DB)
# The database `make demo` uses.
DEMO_URL     ?= postgres://postgres@127.0.0.1:5432/flowfabric
export DATABASE_URL

.PHONY: help db prepare check test soak demo bench clean-test-dbs

help: ## List the targets
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  %-16s %s\n", $$1, $$2}'

db: ## Recreate the dev database the sqlx macros check against, from migrations/
	@psql "$(PG_ADMIN_URL)" -qc "DROP DATABASE IF EXISTS $(DEV_DB) WITH (FORCE)" -c "CREATE DATABASE $(DEV_DB)"
	@for f in $$(ls migrations/V*__*.sql | sort -t V -k 2 -n); do \
		psql "$(DATABASE_URL)" -q -v ON_ERROR_STOP=1 -f "$$f" >/dev/null || exit 1; done
	@echo "dev database $(DEV_DB) migrated"

prepare: db ## Regenerate .sqlx/ (offline query metadata) for all targets
	cargo sqlx prepare --workspace -- --all-targets

check: ## fmt, clippy -D warnings, docs, offline build, and .sqlx freshness
	cargo fmt --all -- --check
	SQLX_OFFLINE=true cargo clippy --workspace --all-targets -- -D warnings
	SQLX_OFFLINE=true RUSTDOCFLAGS="-D warnings" cargo doc --no-deps
	SQLX_OFFLINE=true cargo build --workspace --all-targets
	$(MAKE) db
	cargo sqlx prepare --workspace --check -- --all-targets

test: ## The whole test suite against the local PostgreSQL
	@scripts/ensure-postgres
	SQLX_OFFLINE=true cargo test --workspace --exclude ff-bench --all-targets --no-fail-fast

SOAK_EXECUTIONS ?= 20000
soak: ## The stress and fault-injection tests, larger and optimised (FF_STRESS_EXECUTIONS)
	@scripts/ensure-postgres
	FF_STRESS_EXECUTIONS=$(SOAK_EXECUTIONS) SQLX_OFFLINE=true cargo test --release --test reliability --test faults -- --nocapture

demo: ## Migrate a local default database and run a small worker pipeline
	@scripts/ensure-postgres
	SQLX_OFFLINE=true cargo run --quiet -p ffpg -- --database-url "$(DEMO_URL)" demo

BENCH_ARGS ?=
bench: ## Side-by-side benchmark on a scratch cluster (this crate, published 0.11.0, commit ceiling)
	SQLX_OFFLINE=true cargo run --release --quiet -p ff-bench -- $(BENCH_ARGS)

clean-test-dbs: ## Drop the scratch databases tests leave behind
	@psql "$(PG_ADMIN_URL)" -Atc "SELECT datname FROM pg_database WHERE datname LIKE 'ff\_t\_%'" \
		| while read -r db; do psql "$(PG_ADMIN_URL)" -qc "DROP DATABASE IF EXISTS $$db WITH (FORCE)"; done
