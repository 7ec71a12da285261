// Command googlerpc writes google/rpc/status.proto and google/rpc/error_details.proto, with
// the files they import, as a FileDescriptorSet to the file named by its argument. It takes
// them from the descriptors compiled into Go's genproto, which concur already depends on:
// neither grpcio nor protobuf ships google.rpc's Python code, and no Debian package we use
// holds its .proto files. generate.sh gives the set to protoc (--descriptor_set_in) to make
// status_pb2.py and error_details_pb2.py, with which check.py reads a BadRequest.
package main

import (
	"fmt"
	"os"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: googlerpc FILE")
		os.Exit(2)
	}
	b, err := proto.Marshal(descriptorSet(status.File_google_rpc_status_proto, errdetails.File_google_rpc_error_details_proto))
	if err == nil {
		err = os.WriteFile(os.Args[1], b, 0o644)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "googlerpc:", err)
		os.Exit(1)
	}
}

// descriptorSet holds files and everything they import, each file after its imports.
func descriptorSet(files ...protoreflect.FileDescriptor) *descriptorpb.FileDescriptorSet {
	set := &descriptorpb.FileDescriptorSet{}
	seen := map[string]bool{}
	var add func(protoreflect.FileDescriptor)
	add = func(f protoreflect.FileDescriptor) {
		if seen[f.Path()] {
			return
		}
		seen[f.Path()] = true
		imports := f.Imports()
		for i := range imports.Len() {
			add(imports.Get(i).FileDescriptor)
		}
		set.File = append(set.File, protodesc.ToFileDescriptorProto(f))
	}
	for _, f := range files {
		add(f)
	}
	return set
}
