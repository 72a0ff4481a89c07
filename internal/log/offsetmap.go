package log

import (
	"hash/maphash"
	"math/bits"
)

// offsetMapSlotBytes is the memory of one OffsetMap slot: a 128-bit key hash
// and an offset, as in Kafka's SkimpyOffsetMap.
const offsetMapSlotBytes = 24

// offsetMapMinSlots is the table size a map starts at before it grows.
const offsetMapMinSlots = 1 << 12

// OffsetMap maps record keys to the last offset seen for them during one
// cleaning pass (Kafka's SkimpyOffsetMap). Keys are kept only as 128-bit
// hashes (two maphash seeds) in an open-addressing table of 24-byte slots
// that grows by doubling up to a fixed memory bound and then holds at most
// loadFactor of its slots: a pass whose dirty section has more keys stops
// where the map filled and leaves the rest for the next pass. A hash
// collision would drop a live record; at 128 bits its chance for n keys is
// about n²/2¹²⁹.
//
// An OffsetMap is used by one goroutine at a time.
type OffsetMap struct {
	slots      []mapSlot // length a power of two
	used       int
	maxSlots   int // power of two, the memory bound
	loadFactor float64
	seed0      maphash.Seed
	seed1      maphash.Seed
	latest     int64 // the highest offset put, -1 if none
}

type mapSlot struct {
	h0, h1 uint64
	off    int64 // offset+1; 0 marks an empty slot
}

// NewOffsetMap returns an empty map that will use at most memoryBytes
// (log.cleaner.dedupe.buffer.size divided among log.cleaner.threads) and fill
// at most loadFactor (log.cleaner.io.buffer.load.factor) of its slots. The
// bound is rounded down to a power of two of slots, at least 2.
func NewOffsetMap(memoryBytes int64, loadFactor float64) *OffsetMap {
	slots := max(memoryBytes/offsetMapSlotBytes, 2)
	maxSlots := 1 << (bits.Len64(uint64(slots)) - 1)
	if loadFactor <= 0 || loadFactor > 1 {
		loadFactor = 0.9
	}
	return &OffsetMap{
		slots:      make([]mapSlot, min(maxSlots, offsetMapMinSlots)),
		maxSlots:   maxSlots,
		loadFactor: loadFactor,
		seed0:      maphash.MakeSeed(),
		seed1:      maphash.MakeSeed(),
		latest:     -1,
	}
}

// Capacity is the most keys the map holds.
func (m *OffsetMap) Capacity() int { return max(int(float64(m.maxSlots)*m.loadFactor), 1) }

// Len is the number of keys in the map.
func (m *OffsetMap) Len() int { return m.used }

// LatestOffset is the highest offset put, -1 if none.
func (m *OffsetMap) LatestOffset() int64 { return m.latest }

// Reset empties the map, keeping its table.
func (m *OffsetMap) Reset() {
	clear(m.slots)
	m.used = 0
	m.latest = -1
}

func (m *OffsetMap) hash(key []byte) (uint64, uint64) {
	return maphash.Bytes(m.seed0, key), maphash.Bytes(m.seed1, key)
}

// find returns the slot of the hash, or the empty slot where it would go.
func (m *OffsetMap) find(h0, h1 uint64) *mapSlot {
	mask := uint64(len(m.slots) - 1)
	for i := h0 & mask; ; i = (i + 1) & mask {
		s := &m.slots[i]
		if s.off == 0 || s.h0 == h0 && s.h1 == h1 {
			return s
		}
	}
}

// Put records off as the latest offset of key. It returns false, changing
// nothing, when key is new and the map is full.
func (m *OffsetMap) Put(key []byte, off int64) bool {
	h0, h1 := m.hash(key)
	s := m.find(h0, h1)
	if s.off == 0 {
		if m.used >= m.Capacity() {
			return false
		}
		if len(m.slots) < m.maxSlots && (m.used+1)*4 > len(m.slots)*3 {
			m.grow()
			s = m.find(h0, h1)
		}
		m.used++
		s.h0, s.h1 = h0, h1
	}
	s.off = off + 1
	m.latest = max(m.latest, off)
	return true
}

// Get returns the latest offset put for key.
func (m *OffsetMap) Get(key []byte) (int64, bool) {
	h0, h1 := m.hash(key)
	s := m.find(h0, h1)
	return s.off - 1, s.off != 0
}

func (m *OffsetMap) grow() {
	old := m.slots
	m.slots = make([]mapSlot, len(old)*2)
	for i := range old {
		if old[i].off != 0 {
			*m.find(old[i].h0, old[i].h1) = old[i]
		}
	}
}
