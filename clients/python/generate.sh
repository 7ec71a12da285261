#!/usr/bin/env bash
# Generates the Python code of concur's contracts (api/concur/*/v1/*.proto) into gen/ beside
# this script, or into the folder given, with google.rpc's Status and BadRequest for check.py.
# It uses Debian's protoc and grpc_python_plugin when both are installed, else pip's
# grpc_tools ($PYTHON -m grpc_tools.protoc, python3 by default). It needs Go as well: the
# google.rpc descriptors come from Go's genproto (see googlerpc/main.go).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out=${1:-$here/gen}

if command -v protoc >/dev/null && command -v grpc_python_plugin >/dev/null; then
  # libprotobuf-dev puts the well-known types (google/protobuf/*.proto) in /usr/include.
  protoc=(protoc -I /usr/include --plugin=protoc-gen-grpc_python="$(command -v grpc_python_plugin)")
else
  # grpc_tools brings its own protoc, plugin and well-known types.
  protoc=("${PYTHON:-python3}" -m grpc_tools.protoc)
fi

mkdir -p "$out"
cd "$root"
"${protoc[@]}" -I api --python_out="$out" --grpc_python_out="$out" api/concur/*/v1/*.proto

rpc=$(mktemp)
trap 'rm -f "$rpc"' EXIT
go run ./clients/python/googlerpc "$rpc"
"${protoc[@]}" --descriptor_set_in="$rpc" --python_out="$out" google/rpc/status.proto google/rpc/error_details.proto
echo "generated the Python code of concur's contracts and google.rpc's errors in $out"
