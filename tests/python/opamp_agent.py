"""An OpAMP agent built on the OpenTelemetry Python OpAMP client (opentelemetry-opamp-client),
talking to fleetset's OpAMP server: it describes itself (service.instance.id, service.version,
the fleetset.label.site attribute), waits for a remote configuration, writes the files it got
as JSON to OUT, and reports the configuration APPLIED.

Usage: opamp_agent.py ENDPOINT AGENT_ID OUT
"""

import json
import os
import sys
import time

from opentelemetry._opamp.agent import OpAMPAgent
from opentelemetry._opamp.callbacks import OpAMPCallbacks
from opentelemetry._opamp.client import OpAMPClient
from opentelemetry._opamp.proto import opamp_pb2

endpoint, agent_id, out = sys.argv[1:4]


class Callbacks(OpAMPCallbacks):
    def on_message(self, agent, client, message):
        remote = message.remote_config
        if remote is None:
            return
        files = {name: f.body.decode() for name, f in remote.config.config_map.items()}
        tmp = out + ".tmp"
        with open(tmp, "w") as f:
            json.dump(files, f)
        os.replace(tmp, out)
        status = client.update_remote_config_status(
            remote_config_hash=remote.config_hash,
            status=opamp_pb2.RemoteConfigStatuses.RemoteConfigStatuses_APPLIED,
        )
        if status is not None:
            agent.send(client.build_remote_config_status_response_message(status))


client = OpAMPClient(
    endpoint=endpoint,
    agent_identifying_attributes={
        "service.instance.id": agent_id,
        "service.name": "python-opamp-agent",
        "service.version": "9.9.9",
    },
    agent_non_identifying_attributes={"fleetset.label.site": "py"},
)
agent = OpAMPAgent(interval=0.5, callbacks=Callbacks(), client=client)
agent.start()
deadline = time.time() + 120
while time.time() < deadline:
    time.sleep(0.2)
agent.stop()
