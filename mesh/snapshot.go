package mesh

import "sort"

// Snapshot is an immutable view of the whole mesh at one moment.
type Snapshot struct {
	// Services are sorted by namespace, then name.
	Services []*Service
	// Endpoints holds the endpoints of each service port, sorted by address
	// then port, without duplicates.
	Endpoints map[PortKey][]Endpoint
	// Routes holds, for each service port that routes attach to, its merged
	// rules. A port without an entry routes everything to itself.
	Routes map[PortKey]*PortRoutes
}

// Service returns the service with the given key, or nil.
func (s *Snapshot) Service(k ServiceKey) *Service {
	i := sort.Search(len(s.Services), func(i int) bool {
		svc := s.Services[i]
		return svc.Namespace > k.Namespace || (svc.Namespace == k.Namespace && svc.Name >= k.Name)
	})
	if i < len(s.Services) && s.Services[i].Namespace == k.Namespace && s.Services[i].Name == k.Name {
		return s.Services[i]
	}
	return nil
}
