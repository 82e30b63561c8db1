package translate

import (
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// any packs m into an Any with deterministic bytes, so that equal inputs
// give byte-equal resources (and stable versions in the cache). Marshaling
// a well-formed generated message cannot fail; if it ever does the problem
// is recorded and the field left empty, which the deep validator reports.
func (t *translator) any(m proto.Message) *anypb.Any {
	a := &anypb.Any{}
	if err := anypb.MarshalFrom(a, m, proto.MarshalOptions{Deterministic: true}); err != nil {
		t.warnf("marshal %T: %v", m, err)
		return nil
	}
	return a
}
