# The two commands a new user needs: `make demo` and `make test`.
.PHONY: demo test

demo:
	./scripts/setup.sh
	.venv/bin/surveyqa demo

test:
	./scripts/setup.sh --test
	.venv/bin/python -m pytest -n 2 --dist loadfile
