package api

import (
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluice-io/sluice/internal/metadata"
)

// Fetch sessions (KIP-227), as Kafka's FetchSession.scala: a client's
// first fetch (epoch 0) creates a session holding its partitions and their
// fetch parameters; later fetches (epoch 1, 2, ...) list only the
// partitions that changed and those to forget, and are answered only the
// partitions with something new (records, a changed high watermark, last
// stable offset or log start offset, or an error).

// Session epochs (FetchMetadata).
const (
	fetchInitialEpoch int32 = 0
	fetchFinalEpoch   int32 = -1
)

// Bounds of the session cache beyond its slots
// (max.incremental.fetch.session.cache.slots).
const (
	// maxFetchSessionPartitions is the most partitions one session holds:
	// a full fetch with more is answered without a session, and an
	// incremental fetch taking a session past it closes the session (the
	// fetch is answered in full, with session id 0).
	maxFetchSessionPartitions = 10000
	// maxFetchSessionCachePartitions is the most partitions all sessions
	// hold together, checked the same way.
	maxFetchSessionCachePartitions = 1000000
)

// fetchSessionKey names a partition in a session: by topic id for
// sessions of Fetch v13+, by name below.
type fetchSessionKey struct {
	id        [16]byte
	topic     string
	partition int32
}

// cachedPartition is a session's partition: the client's last fetch
// parameters and what it was last sent (Kafka's CachedPartition).
type cachedPartition struct {
	key fetchSessionKey
	// name is the topic's name in a session by topic id, once known.
	name string
	req  kmsg.FetchRequestTopicPartition
	// hw, lso and logStart are what the client was last told; -1 before
	// the first response carrying the partition and after an error.
	hw, lso, logStart int64
}

// fetchSession is one client's session. mu guards epoch, parts and
// index; the cache keeps its use time and size.
type fetchSession struct {
	id           int32
	privileged   bool // a follower's
	usesTopicIDs bool // created by Fetch v13+
	created      time.Time

	mu    sync.Mutex
	epoch int32 // the epoch the next request must carry
	// parts in fetch order: partitions sent records move to the end, so
	// that a response's byte limit does not starve the last ones.
	parts []*cachedPartition
	index map[fetchSessionKey]*cachedPartition
}

// moveToEnd moves cp to the end of the fetch order.
func (s *fetchSession) moveToEnd(cp *cachedPartition) {
	for i, p := range s.parts {
		if p == cp {
			copy(s.parts[i:], s.parts[i+1:])
			s.parts[len(s.parts)-1] = cp
			return
		}
	}
}

// nextFetchEpoch is the epoch after e (FetchMetadata.nextEpoch).
func nextFetchEpoch(e int32) int32 {
	switch {
	case e < 0:
		return fetchFinalEpoch
	case e == 1<<31-1:
		return 1
	}
	return e + 1
}

// fetchSessionCache is the broker's sessions (Kafka's FetchSessionCache):
// at most maxEntries, a new one evicting, when the cache is full, the
// least recently used session if idle longer than evictAfter, else the
// smallest session (by partitions) older than evictAfter and smaller than
// the new one; a follower's session may also evict a consumer's at any
// age. Safe for concurrent use: a session's mu may be held when taking
// c.mu, never the other way round.
type fetchSessionCache struct {
	maxEntries int
	evictAfter time.Duration
	now        func() time.Time

	mu         sync.Mutex
	sessions   map[int32]*sessionEntry
	partitions int // held by all sessions, as of their last touch
}

// sessionEntry is the cache's bookkeeping of a session.
type sessionEntry struct {
	s        *fetchSession
	size     int // partitions at the last touch
	lastUsed time.Time
}

func newFetchSessionCache(maxEntries int, evictAfter time.Duration) *fetchSessionCache {
	return &fetchSessionCache{
		maxEntries: max(maxEntries, 0),
		evictAfter: evictAfter,
		now:        time.Now,
		sessions:   make(map[int32]*sessionEntry),
	}
}

// get returns a session by id.
func (c *fetchSessionCache) get(id int32) *fetchSession {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e := c.sessions[id]; e != nil {
		return e.s
	}
	return nil
}

// remove drops a session; it reports whether it was cached.
func (c *fetchSessionCache) remove(id int32) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.removeLocked(id)
}

func (c *fetchSessionCache) removeLocked(id int32) bool {
	e := c.sessions[id]
	if e == nil {
		return false
	}
	c.partitions -= e.size
	delete(c.sessions, id)
	return true
}

// len is the number of sessions cached.
func (c *fetchSessionCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.sessions)
}

// touch records a use of s, now holding size partitions; it reports
// false, removing s, when that takes s or the cache past its partition
// bound.
func (c *fetchSessionCache) touch(s *fetchSession, size int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.sessions[s.id]
	if e == nil || e.s != s {
		return true // evicted meanwhile: no longer accounted
	}
	e.lastUsed = c.now()
	total := c.partitions - e.size + size
	if size > maxFetchSessionPartitions || total > maxFetchSessionCachePartitions {
		c.removeLocked(s.id)
		return false
	}
	c.partitions, e.size = total, size
	return true
}

// create makes a session of parts (in fetch order) if the cache has room
// or can evict for it; nil if not.
func (c *fetchSessionCache) create(privileged, usesTopicIDs bool, parts []*cachedPartition) *fetchSession {
	size := len(parts)
	if size > maxFetchSessionPartitions {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	if c.maxEntries == 0 || c.partitions+size > maxFetchSessionCachePartitions {
		return nil
	}
	if len(c.sessions) >= c.maxEntries && !c.evictLocked(privileged, size, now) {
		return nil
	}
	s := &fetchSession{
		id: c.newIDLocked(), privileged: privileged, usesTopicIDs: usesTopicIDs, created: now,
		epoch: nextFetchEpoch(fetchInitialEpoch),
		parts: parts, index: make(map[fetchSessionKey]*cachedPartition, size),
	}
	for _, cp := range parts {
		s.index[cp.key] = cp
	}
	c.sessions[s.id] = &sessionEntry{s: s, size: size, lastUsed: now}
	c.partitions += size
	return s
}

// newIDLocked is a random positive id not in use.
func (c *fetchSessionCache) newIDLocked() int32 {
	for {
		id := rand.Int32()
		if _, ok := c.sessions[id]; id != 0 && !ok {
			return id
		}
	}
}

// evictLocked makes room for a new session of size partitions, as
// Kafka's tryEvict: the least recently used session if stale, else the
// smallest evictable one when the new session ranks above it (more
// partitions; on a tie, a follower's over a consumer's).
func (c *fetchSessionCache) evictLocked(privileged bool, size int, now time.Time) bool {
	var lru, smallest *sessionEntry
	for _, e := range c.sessions {
		if lru == nil || e.lastUsed.Before(lru.lastUsed) || (e.lastUsed.Equal(lru.lastUsed) && e.s.id < lru.s.id) {
			lru = e
		}
		// Kafka: evictable by all once older than evictAfter, by a
		// follower's session at any age when a consumer's.
		if now.Sub(e.s.created) <= c.evictAfter && !(privileged && !e.s.privileged) {
			continue
		}
		if smallest == nil || evictableLess(e, smallest.size, smallest.s.privileged, smallest.s.id) {
			smallest = e
		}
	}
	if lru == nil {
		return false
	}
	if now.Sub(lru.lastUsed) > c.evictAfter {
		c.removeLocked(lru.s.id)
		return true
	}
	// The new session's key has id 0, below every session's: evict only
	// when the candidate ranks strictly below it.
	if smallest == nil || !evictableLess(smallest, size, privileged, 0) {
		return false
	}
	c.removeLocked(smallest.s.id)
	return true
}

// evictableLess says whether e ranks below (size, privileged, id) as
// Kafka's EvictableKey: by size, then consumers before followers, then
// id.
func evictableLess(e *sessionEntry, size int, privileged bool, id int32) bool {
	if e.size != size {
		return e.size < size
	}
	if e.s.privileged != privileged {
		return !e.s.privileged
	}
	return e.s.id < id
}

// fetchSessions is h's session cache, made by New from the broker configs
// (read-only ones, so read once).
func (h *Handler) fetchSessions() *fetchSessionCache { return h.sessions }

// How a fetch uses sessions (Kafka's FetchContext kinds).
const (
	fetchSessionless = iota // answered with session id 0
	fetchFull               // a new session is made of it when answered
	fetchIncremental        // of an existing session
)

// fetchContext is what a fetch reads and how its response is finished.
type fetchContext struct {
	kind  int
	cache *fetchSessionCache
	// read is the request to read: the client's, or for an incremental
	// fetch the session's partitions in fetch order.
	read       *kmsg.FetchRequest
	session    *fetchSession
	parts      []*cachedPartition // incremental: read's partitions, in order
	privileged bool
	img        func() *metadata.Image
}

// newFetchContext chooses a fetch's context from its session id and epoch
// (Kafka's FetchManager.newContext), updating the session of an
// incremental fetch; a non-nil response is a session error to answer now.
func (h *Handler) newFetchContext(r *kmsg.FetchRequest) (*fetchContext, *kmsg.FetchResponse) {
	fc := &fetchContext{kind: fetchSessionless, read: r,
		privileged: r.ReplicaID >= 0 || (r.Version >= 15 && r.ReplicaState.ID >= 0), img: h.b.Image}
	if r.Version < 7 {
		return fc, nil
	}
	fc.cache = h.fetchSessions()
	if r.SessionEpoch == fetchInitialEpoch || r.SessionEpoch == fetchFinalEpoch {
		// A full fetch closes the session it names.
		if r.SessionID != 0 {
			fc.cache.remove(r.SessionID)
		}
		if r.SessionEpoch == fetchInitialEpoch {
			fc.kind = fetchFull
		}
		return fc, nil
	}
	sessionErr := func(code int16) (*fetchContext, *kmsg.FetchResponse) {
		resp := r.ResponseKind().(*kmsg.FetchResponse)
		resp.ErrorCode = code
		return nil, resp
	}
	s := fc.cache.get(r.SessionID)
	if s == nil {
		return sessionErr(kerr.FetchSessionIDNotFound.Code)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.epoch != r.SessionEpoch:
		return sessionErr(kerr.InvalidFetchSessionEpoch.Code)
	case s.usesTopicIDs != (r.Version >= 13):
		return sessionErr(kerr.FetchSessionTopicIDError.Code)
	}
	// Kafka's FetchSession.update: the request's partitions are added or
	// take their new fetch parameters, then the forgotten ones go.
	for _, rt := range r.Topics {
		for _, rp := range rt.Partitions {
			k := sessionKey(r.Version, rt.Topic, rt.TopicID, rp.Partition)
			if cp := s.index[k]; cp != nil {
				cp.req = rp
				continue
			}
			cp := &cachedPartition{key: k, req: rp, hw: -1, lso: -1, logStart: -1}
			s.index[k] = cp
			s.parts = append(s.parts, cp)
		}
	}
	forgot := false
	for _, ft := range r.ForgottenTopics {
		for _, p := range ft.Partitions {
			k := sessionKey(r.Version, ft.Topic, ft.TopicID, p)
			if s.index[k] != nil {
				delete(s.index, k)
				forgot = true
			}
		}
	}
	if forgot {
		kept := s.parts[:0]
		for _, cp := range s.parts {
			if s.index[cp.key] == cp {
				kept = append(kept, cp)
			}
		}
		clear(s.parts[len(kept):])
		s.parts = kept
	}
	if len(s.parts) == 0 {
		// Nothing left: closed, and the fetch answered sessionless.
		fc.cache.remove(s.id)
		return fc, nil
	}
	if !fc.cache.touch(s, len(s.parts)) {
		// Past the partition bounds: the session is closed and the
		// fetch answered in full, without a session.
		resolveNames(h.b.Image(), s.parts)
		fc.read = sessionRequest(r, s.parts)
		return fc, nil
	}
	s.epoch = nextFetchEpoch(s.epoch)
	fc.kind, fc.session = fetchIncremental, s
	resolveNames(h.b.Image(), s.parts)
	fc.parts = slices.Clone(s.parts)
	fc.read = sessionRequest(r, fc.parts)
	return fc, nil
}

// resolveNames notes the names of the topics of parts known by id (Kafka's
// maybeResolveUnknownName).
func resolveNames(img *metadata.Image, parts []*cachedPartition) {
	for _, cp := range parts {
		if cp.name == "" && cp.key.topic == "" {
			if t := img.TopicsByID[metadata.TopicID(cp.key.id)]; t != nil {
				cp.name = t.Name
			}
		}
	}
}

// sessionKey names a request's partition in a session.
func sessionKey(version int16, topic string, id [16]byte, partition int32) fetchSessionKey {
	if version >= 13 {
		return fetchSessionKey{id: id, partition: partition}
	}
	return fetchSessionKey{topic: topic, partition: partition}
}

// sessionRequest is r reading parts, in order, with their cached fetch
// parameters; consecutive partitions of a topic share a request topic.
func sessionRequest(r *kmsg.FetchRequest, parts []*cachedPartition) *kmsg.FetchRequest {
	rr := *r
	rr.Topics, rr.ForgottenTopics = nil, nil
	for i, cp := range parts {
		n := len(rr.Topics)
		if n == 0 || parts[i-1].key.topic != cp.key.topic || parts[i-1].key.id != cp.key.id {
			rt := kmsg.NewFetchRequestTopic()
			rt.Topic, rt.TopicID = cp.key.topic, cp.key.id
			if rt.Topic == "" {
				rt.Topic = cp.name // only to tell a recreated topic
			}
			rr.Topics = append(rr.Topics, rt)
			n++
		}
		rr.Topics[n-1].Partitions = append(rr.Topics[n-1].Partitions, cp.req)
	}
	return &rr
}

// finish completes the response read for fc as it is sent: the session
// id, and Kafka's updateAndGenerateResponseData: a full fetch's session
// is created from what the response tells; an incremental fetch's
// response keeps only the partitions the client must hear about
// (maybeUpdateResponseData), whose cached state becomes what is sent.
func (fc *fetchContext) finish(rd *fetchRead) {
	resp := rd.resp
	resp.SessionID = 0
	switch fc.kind {
	case fetchFull:
		var parts []*cachedPartition
		index := make(map[fetchSessionKey]*cachedPartition)
		forEachPartition(fc.read, resp, func(rt *kmsg.FetchRequestTopic, rp *kmsg.FetchRequestTopicPartition, sp *kmsg.FetchResponseTopicPartition) bool {
			k := sessionKey(fc.read.Version, rt.Topic, rt.TopicID, rp.Partition)
			cp := index[k]
			if cp == nil {
				cp = &cachedPartition{key: k}
				index[k] = cp
				parts = append(parts, cp)
			}
			cp.req = *rp
			cp.hw, cp.lso, cp.logStart = sp.HighWatermark, sp.LastStableOffset, sp.LogStartOffset
			return true
		})
		resolveNames(fc.img(), parts)
		if s := fc.cache.create(fc.privileged, fc.read.Version >= 13, parts); s != nil {
			resp.SessionID = s.id
		}
	case fetchIncremental:
		s := fc.session
		s.mu.Lock()
		defer s.mu.Unlock()
		resp.SessionID = s.id
		i := 0
		sent := make(map[*cachedPartition]bool)
		forEachPartition(fc.read, resp, func(_ *kmsg.FetchRequestTopic, _ *kmsg.FetchRequestTopicPartition, sp *kmsg.FetchResponseTopicPartition) bool {
			cp := fc.parts[i]
			i++
			must := len(sp.RecordBatches) > 0
			if must {
				sent[cp] = true
			}
			if cp.hw != sp.HighWatermark {
				must, cp.hw = true, sp.HighWatermark
			}
			if cp.logStart != sp.LogStartOffset {
				must, cp.logStart = true, sp.LogStartOffset
			}
			if cp.lso != sp.LastStableOffset {
				must, cp.lso = true, sp.LastStableOffset
			}
			if sp.PreferredReadReplica >= 0 {
				must = true
			}
			if sp.ErrorCode != 0 {
				// Sent every time, and again once the error is gone.
				must, cp.hw = true, -1
			}
			return must
		})
		// Partitions sent records go to the end of the fetch order.
		if len(sent) > 0 {
			order := make([]*cachedPartition, 0, len(s.parts))
			for _, cp := range s.parts {
				if !sent[cp] {
					order = append(order, cp)
				}
			}
			for _, cp := range s.parts {
				if sent[cp] {
					order = append(order, cp)
				}
			}
			s.parts = order
		}
	}
}

// forEachPartition walks a response with the request it was read from
// (readFetch answers each requested partition once, in order), keeping in
// the response the partitions keep says to and the topics left with some.
func forEachPartition(r *kmsg.FetchRequest, resp *kmsg.FetchResponse, keep func(*kmsg.FetchRequestTopic, *kmsg.FetchRequestTopicPartition, *kmsg.FetchResponseTopicPartition) bool) {
	topics := resp.Topics[:0]
	for ti := range resp.Topics {
		st, rt := &resp.Topics[ti], &r.Topics[ti]
		parts := st.Partitions[:0]
		for pi := range st.Partitions {
			if keep(rt, &rt.Partitions[pi], &st.Partitions[pi]) {
				parts = append(parts, st.Partitions[pi])
			}
		}
		st.Partitions = parts
		if len(parts) > 0 || len(rt.Partitions) == 0 {
			topics = append(topics, *st)
		}
	}
	resp.Topics = topics
}
