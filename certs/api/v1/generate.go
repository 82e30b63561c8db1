// Package certsv1 is the generated Go code of certificate.proto, the API of
// Sluice's certificate service.
//
// The generated files are committed: building and CI need no protoc. To
// regenerate after changing the .proto, with protoc on PATH and the plugins
// installed outside the repository:
//
//	GOBIN=/tmp/protoc-bin go install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
//	GOBIN=/tmp/protoc-bin go install google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.6.2
//	PATH=/tmp/protoc-bin:$PATH go generate ./certs/api/v1
package certsv1

//go:generate protoc --proto_path=. --go_out=. --go_opt=paths=source_relative --go-grpc_out=. --go-grpc_opt=paths=source_relative certificate.proto
