"""moto server answering one request at a time.

moto's own `moto_server` is threaded and its backends take no locks, so two concurrent
conditional writes can both pass their condition. DynamoDB itself is linearizable per item;
serving requests one at a time gives the tests that guarantee.
"""
import sys

from moto.server import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import run_simple

host, port = sys.argv[1], int(sys.argv[2])
run_simple(host, port, DomainDispatcherApplication(create_backend_app), threaded=False, use_reloader=False)
