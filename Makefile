# ClinicBox developer entry points. `make run` and `make test` build .venv themselves.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.clinicbox-installed

.PHONY: install run test test-long lint system-deps clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	CLINICBOX_DATA_DIR="$${CLINICBOX_DATA_DIR:-./var}" $(BIN)/clinicbox serve

system-deps:
	@bash firmware_scripts/dev/install-test-deps.sh

# Worker processes for the tests that make no real-time call (pytest-xdist, one per core);
# the real-time ones (marked `realtime` by tests/conftest.py: aiortc, browser and lab calls
# judged on timing) then run in one process with nothing beside them. Both parts always run.
TEST_WORKERS ?= 2

test: $(STAMP) system-deps
	$(BIN)/ruff check .
	$(BIN)/mypy
	status=0; \
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile -m 'not long and not realtime' || status=1; \
	$(BIN)/python -m pytest -q -p no:xdist -m 'not long and realtime' || status=1; \
	exit $$status

# What `make test` leaves out (marked `long`): harness baselines that prove no product claim.
test-long: $(STAMP) system-deps
	$(BIN)/python -m pytest -q -m long

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) var .pytest_cache
