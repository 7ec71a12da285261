// Package api holds the concur contracts: the .proto files under concur/, the Go generated
// from them beside each file, hand-written Validate methods, and the contracts' descriptors
// with their comments, which servers hand to gRPC reflection so that `grpcurl describe` shows
// a user what every service, RPC and field means.
//
// Regenerate everything after editing a .proto file with `go generate ./api`.
package api

//go:generate sh -c "cd .. && go tool -modfile=tools/go.mod buf generate && go tool -modfile=tools/go.mod buf build --as-file-descriptor-set -o api/concur.binpb"

import (
	_ "embed"
	"fmt"
	"sync"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
)

// descriptorSet is `buf build` of the contracts: a FileDescriptorSet with source info, which
// protoc-gen-go strips from the descriptors it embeds in generated code.
//
//go:embed concur.binpb
var descriptorSet []byte

// Descriptors returns the contracts' file descriptors, comments included, with the files they
// import.
var Descriptors = sync.OnceValues(func() (*protoregistry.Files, error) {
	var set descriptorpb.FileDescriptorSet
	if err := proto.Unmarshal(descriptorSet, &set); err != nil {
		return nil, fmt.Errorf("decode embedded descriptors: %w", err)
	}
	files, err := protodesc.NewFiles(&set)
	if err != nil {
		return nil, fmt.Errorf("build embedded descriptors: %w", err)
	}
	return files, nil
})
