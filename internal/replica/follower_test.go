package replica

import (
	"testing"
	"time"
)

// t0 is the tests' epoch: far from the zero time.Time, which means "never".
var t0 = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

func at(d time.Duration) time.Time { return t0.Add(d) }

// fmtTime prints a time as its distance from t0, "never" for the zero time.
func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return t.Sub(t0).String()
}

func TestFollowerFetchedCaughtUpTime(t *testing.T) {
	type fetch struct {
		leaderLEO, offset int64
		at                time.Duration
		// wantCaughtUp is the lastCaughtUpTime after the fetch; -1 for never.
		wantCaughtUp time.Duration
	}
	never := time.Duration(-1)
	tests := []struct {
		name string
		// start: an in-sync follower reset at t0 by a new leader, or one
		// outside the ISR (never caught up).
		inSync  bool
		fetches []fetch
	}{
		{
			name:   "fetch at the leader's LEO is caught up now",
			inSync: false,
			fetches: []fetch{
				{leaderLEO: 10, offset: 10, at: time.Second, wantCaughtUp: time.Second},
			},
		},
		{
			name:   "fetch past the leader's LEO is caught up now",
			inSync: false,
			fetches: []fetch{
				{leaderLEO: 10, offset: 12, at: time.Second, wantCaughtUp: time.Second},
			},
		},
		{
			// Under steady produce the follower never reaches the leader's
			// current LEO, but each fetch reaches the LEO the leader had at
			// the previous one: it was caught up at the previous fetch time.
			name:   "behind under steady produce, reaching the previous fetch's leader LEO",
			inSync: true,
			fetches: []fetch{
				// The new leader knows nothing (last fetch leader LEO -1,
				// last fetch never): caught up stays at the reset time.
				{leaderLEO: 10, offset: 0, at: 100 * time.Millisecond, wantCaughtUp: 0},
				{leaderLEO: 20, offset: 10, at: 200 * time.Millisecond, wantCaughtUp: 100 * time.Millisecond},
				{leaderLEO: 30, offset: 20, at: 300 * time.Millisecond, wantCaughtUp: 200 * time.Millisecond},
				{leaderLEO: 40, offset: 30, at: 400 * time.Millisecond, wantCaughtUp: 300 * time.Millisecond},
				// Falls further behind: 35 < 40, the LEO at the previous
				// fetch. No proof it was caught up since.
				{leaderLEO: 50, offset: 35, at: 500 * time.Millisecond, wantCaughtUp: 300 * time.Millisecond},
				{leaderLEO: 60, offset: 45, at: 600 * time.Millisecond, wantCaughtUp: 300 * time.Millisecond},
				// Reaches the previous fetch's leader LEO (60) again.
				{leaderLEO: 70, offset: 60, at: 700 * time.Millisecond, wantCaughtUp: 600 * time.Millisecond},
				// Catches up the current LEO.
				{leaderLEO: 70, offset: 70, at: 800 * time.Millisecond, wantCaughtUp: 800 * time.Millisecond},
			},
		},
		{
			name:   "outside the ISR and behind: never caught up",
			inSync: false,
			fetches: []fetch{
				{leaderLEO: 10, offset: 0, at: time.Second, wantCaughtUp: never},
				// Reaching the previous fetch's leader LEO proves it was
				// caught up at that fetch.
				{leaderLEO: 20, offset: 10, at: 2 * time.Second, wantCaughtUp: time.Second},
			},
		},
		{
			name:   "caught up time never goes back",
			inSync: false,
			fetches: []fetch{
				{leaderLEO: 10, offset: 10, at: 5 * time.Second, wantCaughtUp: 5 * time.Second},
				// A fetch stamped earlier (a clock step) keeps the later time.
				{leaderLEO: 10, offset: 10, at: 4 * time.Second, wantCaughtUp: 5 * time.Second},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFollower(2)
			f.reset(t0, 0, true, tt.inSync)
			for i, fe := range tt.fetches {
				f.fetched(fe.offset, fe.leaderLEO, at(fe.at))
				want := "never"
				if fe.wantCaughtUp != never {
					want = fe.wantCaughtUp.String()
				}
				if got := fmtTime(f.lastCaughtUpTime); got != want {
					t.Fatalf("fetch %d (offset %d, leader LEO %d at %v): last caught up %s, want %s",
						i, fe.offset, fe.leaderLEO, fe.at, got, want)
				}
				if f.logEndOffset != fe.offset || f.lastFetchTime != at(fe.at) {
					t.Fatalf("fetch %d: LEO %d last fetch %s, want %d %v", i, f.logEndOffset, fmtTime(f.lastFetchTime), fe.offset, fe.at)
				}
			}
		})
	}
}

func TestFollowerReset(t *testing.T) {
	known := func() follower {
		f := newFollower(2)
		f.reset(t0, 0, true, true)
		f.fetched(40, 50, at(time.Second))
		return f
	}
	tests := []struct {
		name                string
		newLeader, inSync   bool
		wantLEO             int64
		wantLastFetchLeader int64
		wantLastFetch       string
		wantCaughtUp        string
	}{
		{"new leader, in the ISR", true, true, -1, -1, "never", "10s"},
		{"new leader, outside the ISR", true, false, -1, -1, "never", "never"},
		{"new epoch, in the ISR", false, true, 40, 60, "10s", "10s"},
		{"new epoch, outside the ISR", false, false, 40, 60, "never", "never"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := known()
			f.reset(at(10*time.Second), 60, tt.newLeader, tt.inSync)
			if f.logEndOffset != tt.wantLEO || f.lastFetchLeaderLogEndOffset != tt.wantLastFetchLeader ||
				fmtTime(f.lastFetchTime) != tt.wantLastFetch || fmtTime(f.lastCaughtUpTime) != tt.wantCaughtUp {
				t.Fatalf("got LEO %d, last fetch leader LEO %d, last fetch %s, caught up %s; want %d %d %s %s",
					f.logEndOffset, f.lastFetchLeaderLogEndOffset, fmtTime(f.lastFetchTime), fmtTime(f.lastCaughtUpTime),
					tt.wantLEO, tt.wantLastFetchLeader, tt.wantLastFetch, tt.wantCaughtUp)
			}
		})
	}
}
