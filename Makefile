# Two commands do everything: `make run` and `make test` (Python 3.11 on Linux).
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
PORT ?= 8501
# Only this computer can open the app; `make run HOST=0.0.0.0` serves every network interface (see docs/server.md).
HOST ?= 127.0.0.1

.PHONY: run test test-fast bench clean

$(VENV)/.runtime: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.test: $(VENV)/.runtime requirements-test.txt
	$(PY) -m pip install --quiet -r requirements-test.txt
	touch $@

run: $(VENV)/.runtime
	$(PY) -m streamlit run app.py --server.address $(HOST) --server.port $(PORT)

# Two workers share the tests; those that assert a wall-clock bound (marked timed) run alone afterwards.
test: $(VENV)/.test
	$(PY) -m pytest -q -n 2 --dist worksteal -m "not timed"
	$(PY) -m pytest -q -m timed

test-fast: $(VENV)/.test
	$(PY) -m pytest -q -m "not browser"

clean:
	rm -rf $(VENV) workspace .pytest_cache
