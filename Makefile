# leadrouter: `make test` runs everything CI runs.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
CARGO ?= cargo

.PHONY: test lambda lint fmt check serve load soak schemathesis console fuzz update-free-email-domains

## Everything: formatting, lints, unit, property, contract, end-to-end and crash tests,
## schemathesis against a running server's /openapi.json, and the console in a real browser.
test: lint
	./scripts/lint-infra.sh
	./scripts/with-moto.sh $(CARGO) test --workspace --all-targets
	$(CARGO) run -q -p leadrouter-cli -- config test examples/leadrouter.toml --cases examples/leadrouter.cases.toml
	./scripts/schemathesis.sh
	./scripts/console-tests.sh

## Every Lambda, for arm64, zipped under target/lambda/ (cargo-lambda goes into .venv; slow on 2 cores).
lambda:
	[ -x .venv/bin/cargo-lambda ] || { python3 -m venv .venv && .venv/bin/pip install -q cargo-lambda; }
	PATH="$(CURDIR)/.venv/bin:$$PATH" cargo lambda build --release --arm64 --output-format zip $(foreach f,ingest admin fetch dedup score assign notify sweep,-p leadrouter-fn-$(f))

schemathesis:
	./scripts/schemathesis.sh

## The console's browser tests alone (installs Chromium and playwright-core if missing).
console:
	./scripts/console-tests.sh

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

check:
	$(CARGO) check --workspace --all-targets

## Run the embedded runtime with the demo roster.
serve:
	$(CARGO) run --release -- serve

## The load benchmark recorded in BENCHMARKS.md.
load:
	$(CARGO) run --release -p leadrouter-tests --bin load -- --rate 500 --seconds 10

## The soak benchmark recorded in BENCHMARKS.md: the real serve binary at 1,000 leads/s for 10
## minutes, retention acting after 3, sampling the file, the WAL, RSS and p99 every 10 s.
soak:
	$(CARGO) build --release -p leadrouter-cli -p leadrouter-tests --bin leadrouter --bin soak
	$(CARGO) run --release -p leadrouter-tests --bin soak -- --rate 1000 --seconds 600

## Each parser's fuzz target for FUZZ_SECONDS (cargo install cargo-fuzz first).
FUZZ_SECONDS ?= 60
fuzz:
	cd fuzz && for t in form meta google generic; do \
	  RUSTC_BOOTSTRAP=1 cargo fuzz run -O $$t -- -max_total_time=$(FUZZ_SECONDS) 2>&1 | grep -E '^(Done|#[0-9]+ +DONE)|panicked|ERROR' ; \
	done

## Refresh the free-mail domain list from the maintained npm package.
update-free-email-domains:
	tmp=$$(mktemp -d) && cd $$tmp && npm pack --silent free-email-domains >/dev/null && tar xzf free-email-domains-*.tgz && \
	ver=$$(node -p "require('./package/package.json').version") && \
	{ echo "# Free mail provider domains, one per line."; \
	  echo "# From the npm package free-email-domains $$ver (MIT, based on HubSpot's list)."; \
	  echo "# Refresh with \`make update-free-email-domains\`."; \
	  node -e "for (const d of [...new Set(require('./package/domains.json').map(s => s.trim().toLowerCase()).filter(Boolean))].sort()) console.log(d)"; \
	} > $(CURDIR)/shared/data/free-email-domains.txt
