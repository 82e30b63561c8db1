package discovery

import (
	"cmp"
	"fmt"
	"slices"
)

// Reasons of a Problem. They double as the reason of the Kubernetes Event
// recorded on the object, so they are CamelCase like Kubernetes reasons.
const (
	// ReasonInvalidAnnotation: a sluice.dev/ annotation has a value that does
	// not parse; the setting's default is used instead.
	ReasonInvalidAnnotation = "InvalidAnnotation"
	// ReasonNoPorts: a Service declares no ports; it is not served.
	ReasonNoPorts = "NoPorts"
	// ReasonDuplicatePort: two ports of a Service share a number or a name;
	// the first one is kept.
	ReasonDuplicatePort = "DuplicatePort"
	// ReasonInvalidPort: a port number is outside 1-65535; the port is skipped.
	ReasonInvalidPort = "InvalidPort"
	// ReasonInvalidClusterIP: a cluster IP that is not an IP address; it is skipped.
	ReasonInvalidClusterIP = "InvalidClusterIP"
	// ReasonUnknownService: an EndpointSlice names no Service, or a Service
	// that does not exist; the slice is ignored.
	ReasonUnknownService = "UnknownService"
	// ReasonUnknownPort: an EndpointSlice port matches no port of its Service
	// by name; the slice port is ignored.
	ReasonUnknownPort = "UnknownPort"
	// ReasonInvalidEndpoint: an endpoint whose address is not an IP address,
	// or a slice whose address type is not IPv4/IPv6; it is skipped.
	ReasonInvalidEndpoint = "InvalidEndpoint"
	// ReasonParseError: a file of the file source does not parse; the last
	// good state of that file is kept.
	ReasonParseError = "ParseError"
	// ReasonUnknownField: a file of the file source has fields that are not
	// part of the object's API (a typo?); they are ignored.
	ReasonUnknownField = "UnknownField"
	// ReasonDuplicateObject: two files of the file source define the same
	// object; the one in the file that sorts last wins.
	ReasonDuplicateObject = "DuplicateObject"
)

// KindFile is the Problem.Kind of problems about a file of the file source;
// Name is the file's path.
const KindFile = "File"

// Problem is something wrong with an input object. Problems never stop a
// build: the object is skipped or served with defaults, and every other
// object is unaffected.
type Problem struct {
	// Kind, Namespace and Name identify the object ("Service", "default", "api").
	// Namespace is empty for cluster-scoped objects and files.
	Kind      string
	Namespace string
	Name      string
	// UID is the object's UID when known, so that a Kubernetes Event can be
	// attached to it.
	UID string
	// Reason is one of the Reason* constants.
	Reason  string
	Message string
}

// String returns "Kind namespace/name: Reason: message".
func (p Problem) String() string {
	obj := p.Name
	if p.Namespace != "" {
		obj = p.Namespace + "/" + p.Name
	}
	return fmt.Sprintf("%s %s: %s: %s", p.Kind, obj, p.Reason, p.Message)
}

// problemKey identifies a problem for deduplication (the UID is left out:
// it does not change what is wrong).
type problemKey struct {
	kind, namespace, name, reason, message string
}

func (p Problem) key() problemKey {
	return problemKey{p.Kind, p.Namespace, p.Name, p.Reason, p.Message}
}

func compareProblems(a, b Problem) int {
	return cmp.Or(
		cmp.Compare(a.Kind, b.Kind),
		cmp.Compare(a.Namespace, b.Namespace),
		cmp.Compare(a.Name, b.Name),
		cmp.Compare(a.Reason, b.Reason),
		cmp.Compare(a.Message, b.Message),
	)
}

// sortProblems sorts problems and drops duplicates in place.
func sortProblems(ps []Problem) []Problem {
	slices.SortFunc(ps, compareProblems)
	return slices.CompactFunc(ps, func(a, b Problem) bool { return a.key() == b.key() })
}
