# Two commands do all set-up on a fresh machine:
#   make demo   - run the detector on the bundled sample scan (writes output/demo/)
#   make test   - run the test suite
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export YOLO_OFFLINE := 1
export PYTHONPATH := $(CURDIR)/CMBDetector

.PHONY: demo demo-followup test benchmark setup clean

setup: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q -r requirements-dev.txt
	touch $(STAMP)

demo: $(STAMP)
	$(PY) scripts/demo.py --out output/demo

demo-followup: $(STAMP)
	$(PY) scripts/demo_followup.py --out output/demo_followup

test: $(STAMP)
	$(PY) -m pytest CMBDetector/Testing/Python -q

benchmark: $(STAMP)
	$(PY) scripts/benchmark.py

clean:
	rm -rf output .pytest_cache
