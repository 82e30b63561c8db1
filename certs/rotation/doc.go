// Package rotation rotates Sluice's CA as a state machine whose phase is
// kept in the CA's store, so that a restart in any phase resumes it:
//
//	root:          Idle → AddRoot → WaitBundle → SwitchSigner → WaitLeaves → DropOldRoot → Idle
//	intermediate:  Idle → SwitchSigner → Idle
//
// The phases of a root rotation:
//
//   - AddRoot: a new root and intermediate are made; the new root joins the
//     trust bundle (a new version); the old intermediate still signs.
//   - WaitBundle: until every agent connected to any replica has applied
//     that bundle (service.Agents, and the other replicas' reports in the
//     store), for at least MinBundleWait, or until BundleTimeout.
//   - SwitchSigner: the new intermediate signs. A peer's new certificate
//     verifies everywhere, because every agent trusts both roots.
//   - WaitLeaves: the longest leaf lifetime (plus the time replicas take to
//     load a change), after which no certificate of the old chain is valid.
//   - DropOldRoot: the bundle is the new root only; waiting for the agents
//     again (for /debug: nothing valid depends on the old root any more).
//
// An intermediate rotation keeps the root, so the bundle does not change
// and no wait is needed. Rotations start at Threshold (80%) of the root's
// or the intermediate's life, or on request (`sluice ca rotate` writes a
// ca.RotationRequest to the store).
//
// Every replica runs a Machine: it reloads the store every ReloadInterval
// and serves what it holds (the ca.Source the certificate service reads),
// and reports its agents' bundle versions to the store. Only the leader
// makes transitions; each is a compare-and-swap Update of the store, so
// even two replicas that both think they lead cannot both make one.
//
// Consumes: the ca.Store, the agents' acknowledgements (service.Agents),
// leadership. Produces: the CA in use (ca.Source), the phase in the store,
// metrics and /debug.
package rotation
