package printer

import (
	"strconv"

	"google.golang.org/grpc/codes"

	printerv1 "github.com/concur-dev/concur/api/concur/printer/v1"
)

// pageSize is the most jobs a Tail takes from the history in one trip to the owner.
const pageSize = 256

// history is the ring of the last written jobs that Tail reads, bounded in jobs and in bytes.
// The owner adds to it; once the owner has ended it is read-only and Tails read it directly.
type history struct {
	ring     []*printerv1.TailResponse
	start    int    // index of the oldest job kept
	n        int    // jobs kept
	bytes    uint64 // what the kept jobs' lines take (see size)
	maxBytes uint64
	last     uint64 // sequence of the last job written, kept or not; 0 when none
}

func newHistory(jobs int, maxBytes, last uint64) *history {
	return &history{ring: make([]*printerv1.TailResponse, jobs), maxBytes: maxBytes, last: last}
}

// add keeps j, forgetting the oldest jobs as needed to stay within both bounds. The
// configuration makes the byte bound at least one job's worth, so j itself is always kept.
func (h *history) add(j *printerv1.TailResponse) {
	b := size(j.GetLines())
	for h.n > 0 && (h.n == len(h.ring) || h.bytes+b > h.maxBytes) {
		h.bytes -= size(h.ring[h.start].GetLines())
		h.ring[h.start] = nil
		h.start = (h.start + 1) % len(h.ring)
		h.n--
	}
	h.ring[(h.start+h.n)%len(h.ring)] = j
	h.n++
	h.bytes += b
	h.last = j.GetSequence()
}

// oldest is the sequence of the oldest job kept, or the next to be written when none is.
func (h *history) oldest() uint64 { return h.last - uint64(h.n) + 1 }

// page is one trip of a Tail to the history.
type page struct {
	from uint64                    // the sequence asked for, 0 resolved to the oldest kept
	last uint64                    // the last sequence written when the page was taken
	jobs []*printerv1.TailResponse // written jobs from `from` on, at most pageSize
	wait <-chan struct{}           // when jobs is empty: closed once more is written
}

// read returns the written jobs from sequence from on. A sequence no longer kept is
// OUT_OF_RANGE on a Tail's first read; on a later read it means the reader fell behind by
// more than the history holds, and it is cut off with RESOURCE_EXHAUSTED.
func (h *history) read(from uint64, first bool) (page, error) {
	oldest := h.oldest()
	if from == 0 {
		from = oldest
	}
	if from < oldest {
		meta := map[string]string{
			"oldest_sequence": strconv.FormatUint(oldest, 10), "requested_sequence": strconv.FormatUint(from, 10),
			"max_jobs": strconv.Itoa(len(h.ring)), "max_jobs_flag": "--printer-history",
			"max_bytes": strconv.FormatUint(h.maxBytes, 10), "max_bytes_flag": "--printer-history-bytes",
		}
		if first {
			return page{}, failure(codes.OutOfRange, "SEQUENCE_NOT_KEPT", meta,
				"sequence %d is no longer kept: the oldest kept is %d; tail from there, or from 0", from, oldest)
		}
		return page{}, failure(codes.ResourceExhausted, "READER_FELL_BEHIND", meta,
			"this reader fell behind the history kept and was cut off, so that printing never waits: call Tail again from %d", oldest)
	}
	p := page{from: from, last: h.last}
	for seq := from; seq <= h.last && len(p.jobs) < pageSize; seq++ {
		p.jobs = append(p.jobs, h.ring[(h.start+int(seq-oldest))%len(h.ring)])
	}
	return p, nil
}
