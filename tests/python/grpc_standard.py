"""Cete's standard gRPC services, driven by the reference Python clients (grpcio's own
health-checking and reflection packages), as grpc_health_probe, Kubernetes or grpcurl would.

    grpc_standard.py health ADDRESS
        prints {"": STATUS, "kvs.KVS": STATUS}
    grpc_standard.py reflect ADDRESS KEY
        lists the services, reads kvs.KVS's descriptors over reflection alone (no .proto),
        builds its messages from them and calls kvs.KVS/Get for KEY; prints what it found.
"""
import json
import sys

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc


def health(address):
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        statuses = {}
        for service in ("", "kvs.KVS"):
            answer = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
            statuses[service] = health_pb2.HealthCheckResponse.ServingStatus.Name(answer.status)
        print(json.dumps(statuses))


def ask(stub, request):
    answers = list(stub.ServerReflectionInfo(iter([request]), timeout=5))
    assert len(answers) == 1, answers
    return answers[0]


def reflect(address, key):
    with grpc.insecure_channel(address) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        listed = ask(stub, reflection_pb2.ServerReflectionRequest(list_services=""))
        services = sorted(s.name for s in listed.list_services_response.service)
        # The file defining kvs.KVS, then each file it imports, as grpcurl resolves them.
        found = ask(stub, reflection_pb2.ServerReflectionRequest(file_containing_symbol="kvs.KVS"))
        files = {}
        todo = list(found.file_descriptor_response.file_descriptor_proto)
        while todo:
            proto = descriptor_pb2.FileDescriptorProto.FromString(todo.pop())
            files[proto.name] = proto
            for dependency in proto.dependency:
                if dependency not in files:
                    by_name = ask(stub, reflection_pb2.ServerReflectionRequest(file_by_filename=dependency))
                    todo.extend(by_name.file_descriptor_response.file_descriptor_proto)
        pool = descriptor_pool.DescriptorPool()
        added = set()
        while len(added) < len(files):
            for name, proto in files.items():
                if name not in added and all(dep in added for dep in proto.dependency):
                    pool.Add(proto)
                    added.add(name)
        kvs = pool.FindServiceByName("kvs.KVS")
        methods = sorted(m.name for m in kvs.methods)
        get = kvs.FindMethodByName("Get")
        request_class = message_factory.GetMessageClass(get.input_type)
        response_class = message_factory.GetMessageClass(get.output_type)
        call = channel.unary_unary(
            "/kvs.KVS/Get",
            request_serializer=request_class.SerializeToString,
            response_deserializer=response_class.FromString,
        )
        answer = call(request_class(key=key), timeout=5)
        print(json.dumps({
            "services": services,
            "methods": methods,
            "value": answer.value.decode("utf-8", "replace"),
            "mod_revision": answer.mod_revision,
        }))


if __name__ == "__main__":
    command, address = sys.argv[1], sys.argv[2]
    if command == "health":
        health(address)
    elif command == "reflect":
        reflect(address, sys.argv[3])
    else:
        sys.exit(f"unknown command {command}")
