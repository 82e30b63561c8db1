package rotation

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/sluice-mesh/sluice/certs/ca"
)

// laggingAgents describes the agents, here and on the other replicas, that
// have not applied trust bundle version v. Other replicas count through
// their reports in st: a replica serving another version lags as a whole;
// a report older than three ReportIntervals is of a replica gone.
func (m *Machine) laggingAgents(now time.Time, st *ca.State, v uint64) []string {
	var out []string
	for _, a := range m.cfg.Agents.Lagging(v) {
		out = append(out, a.String()+" on "+m.cfg.Replica)
	}
	for _, r := range m.freshReports(now, st) {
		switch {
		case r.BundleVersion != v:
			out = append(out, fmt.Sprintf("replica %s serves trust bundle version %d to its %d agents", r.Replica, r.BundleVersion, r.Agents))
		case r.Lagging > 0:
			for _, a := range r.LaggingAgents {
				out = append(out, a+" on "+r.Replica)
			}
			if more := r.Lagging - len(r.LaggingAgents); more > 0 {
				out = append(out, fmt.Sprintf("%d more on %s", more, r.Replica))
			}
		}
	}
	return out
}

// countLagging counts the agents laggingAgents describes.
func (m *Machine) countLagging(now time.Time, st *ca.State, v uint64) int {
	n := len(m.cfg.Agents.Lagging(v))
	for _, r := range m.freshReports(now, st) {
		if r.BundleVersion != v {
			n += r.Agents
		} else {
			n += r.Lagging
		}
	}
	return n
}

// freshReports are the other replicas' recent reports.
func (m *Machine) freshReports(now time.Time, st *ca.State) []ca.ReplicaReport {
	var out []ca.ReplicaReport
	for _, r := range st.Reports {
		if r.Replica != m.cfg.Replica && now.Sub(r.At) <= 3*m.cfg.ReportInterval {
			out = append(out, r)
		}
	}
	return out
}

// report writes this replica's report when it changed (at most once per
// ReloadInterval) or ReportInterval passed. It returns when it wants to
// write next, and whether it wrote.
func (m *Machine) report(ctx context.Context, now time.Time) (time.Time, bool, error) {
	if m.cfg.ReadOnly {
		return now.Add(m.cfg.ReportInterval), false, nil
	}
	c := m.source.Current()
	v := c.TrustBundleVersion()
	lagging := m.cfg.Agents.Lagging(v)
	r := ca.ReplicaReport{Replica: m.cfg.Replica, At: now, BundleVersion: v, Agents: len(m.cfg.Agents.List()), Lagging: len(lagging)}
	for _, a := range lagging[:min(len(lagging), ca.MaxReportedAgents)] {
		r.LaggingAgents = append(r.LaggingAgents, a.String())
	}
	heartbeat := m.reportedAt.Add(m.cfg.ReportInterval)
	if m.reported != nil && sameReport(*m.reported, r) && now.Before(heartbeat) {
		return heartbeat, false, nil
	}
	if m.reported != nil && now.Sub(m.reportedAt) < m.cfg.ReloadInterval && now.Before(heartbeat) {
		return m.reportedAt.Add(m.cfg.ReloadInterval), false, nil
	}
	if err := m.cfg.Store.Report(ctx, r); err != nil {
		return now.Add(m.cfg.ReloadInterval), false, err
	}
	m.reported, m.reportedAt = &r, now
	return now.Add(m.cfg.ReportInterval), true, nil
}

func sameReport(a, b ca.ReplicaReport) bool {
	return a.BundleVersion == b.BundleVersion && a.Agents == b.Agents && a.Lagging == b.Lagging && slices.Equal(a.LaggingAgents, b.LaggingAgents)
}
