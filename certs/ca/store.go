package ca

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

var (
	// ErrNotFound is returned by Store.Load when no CA is stored.
	ErrNotFound = errors.New("no CA stored")
	// ErrExists is returned by Store.Create when a CA is already stored.
	ErrExists = errors.New("a CA is already stored")
	// ErrConflict is returned by Store.Update when the stored state changed
	// since it was loaded: load it again and retry.
	ErrConflict = errors.New("the stored CA changed since it was read")
)

// Store keeps the CA material and the state of its rotation. Create must be
// create-if-absent: of two replicas creating at once, one wins and the
// other gets ErrExists. Update must be compare-and-swap: of two replicas
// updating the same revision, one wins and the other gets ErrConflict.
type Store interface {
	// Load returns the stored material, not validated, or ErrNotFound.
	Load(ctx context.Context) (*Material, error)
	// Create stores m unless material is already stored (ErrExists).
	Create(ctx context.Context, m *Material) error
	// LoadState returns everything stored, not validated, or ErrNotFound.
	LoadState(ctx context.Context) (*State, error)
	// Update replaces the material, next material, rotation and reports
	// with s's if the store is still at s.Revision, else ErrConflict. It
	// returns the new revision. s.Request is not written.
	Update(ctx context.Context, s *State) (revision string, err error)
	// RequestRotation records r for the leader to act upon, replacing an
	// earlier request.
	RequestRotation(ctx context.Context, r RotationRequest) error
	// Report records a replica's report, replacing its previous one.
	Report(ctx context.Context, r ReplicaReport) error
	// String says where the material is, for logs.
	String() string
}

// BootstrapOptions say how to obtain the CA.
type BootstrapOptions struct {
	// Generate a new CA when the store has none. False when the operator
	// provides the CA: then a missing CA is an error.
	Generate bool
	// Generation parameters (Now is ignored: Clock is used).
	GenerateOptions GenerateOptions
	// Clock is time.Now when nil.
	Clock func() time.Time
	Log   *slog.Logger
}

// LoadOrCreate returns the CA material from store, generating and storing it
// first when there is none and opts.Generate is set. When another replica
// stores its CA first, that one is read back and used, so all replicas sign
// with the same CA. The material is validated.
func LoadOrCreate(ctx context.Context, store Store, opts BootstrapOptions) (*Material, error) {
	if opts.Clock == nil {
		opts.Clock = time.Now
	}
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m, err := store.Load(ctx)
	switch {
	case err == nil:
		log.Info("using the stored CA", "store", store.String(), "ca", m)
		return validated(m, opts.Clock(), store)
	case !errors.Is(err, ErrNotFound):
		return nil, fmt.Errorf("loading the CA from %s: %w", store, err)
	case !opts.Generate:
		return nil, fmt.Errorf("no CA in %s, and Sluice was told the operator provides it: %w", store, err)
	}
	gen := opts.GenerateOptions
	gen.Now = opts.Clock()
	m, err = Generate(gen)
	if err != nil {
		return nil, fmt.Errorf("generating the CA: %w", err)
	}
	switch err := store.Create(ctx, m); {
	case err == nil:
		log.Info("generated and stored a new CA", "store", store.String(), "ca", m)
		return validated(m, opts.Clock(), store)
	case errors.Is(err, ErrExists):
		// Another replica won the race; use its CA.
		m, err := store.Load(ctx)
		if err != nil {
			return nil, fmt.Errorf("loading the CA another replica stored in %s: %w", store, err)
		}
		log.Info("another replica stored the CA first; using it", "store", store.String(), "ca", m)
		return validated(m, opts.Clock(), store)
	default:
		return nil, fmt.Errorf("storing the new CA in %s: %w", store, err)
	}
}

func validated(m *Material, now time.Time, store Store) (*Material, error) {
	if err := m.Validate(now); err != nil {
		return nil, fmt.Errorf("the CA in %s: %w", store, err)
	}
	return m, nil
}
