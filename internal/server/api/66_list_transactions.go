package api

import (
	"regexp"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluice-io/sluice/internal/txn"
)

// ListTransactions v0-2.
//
// Lists the transactional ids, filtered by state names (unknown names are
// returned in UnknownStateFilters and match nothing), producer ids, and
// from v1 a minimum time open (DurationFilterMillis; -1: none) and from v2
// a regular expression on the id (an invalid one: INVALID_REGULAR_EXPRESSION).
// Before the transaction state topic exists the list is empty.
func (h *Handler) listTransactions(r *kmsg.ListTransactionsRequest) kmsg.Response {
	resp := r.ResponseKind().(*kmsg.ListTransactionsResponse)
	f := txn.ListFilter{ProducerIDs: r.ProducerIDFilters, MinDurationMs: -1}
	if r.Version >= 1 {
		f.MinDurationMs = r.DurationFilterMillis
	}
	for _, name := range r.StateFilters {
		s, ok := txn.ParseState(name)
		if !ok {
			resp.UnknownStateFilters = append(resp.UnknownStateFilters, name)
			continue
		}
		f.States = append(f.States, s)
	}
	var re *regexp.Regexp
	if r.Version >= 2 && r.TransactionalIDPattern != nil && *r.TransactionalIDPattern != "" {
		var err error
		if re, err = regexp.Compile("^(?:" + *r.TransactionalIDPattern + ")$"); err != nil {
			resp.ErrorCode = kerr.InvalidRegularExpression.Code
			return resp
		}
	}
	if len(r.StateFilters) > 0 && len(f.States) == 0 {
		return resp // only unknown states: nothing matches
	}
	c, ok := h.txns()
	if !ok {
		return resp
	}
	list, err := c.List(f)
	if err != nil {
		resp.ErrorCode = errorCode(err)
		return resp
	}
	for _, l := range list {
		if re != nil && !re.MatchString(l.ID) {
			continue
		}
		ts := kmsg.NewListTransactionsResponseTransactionState()
		ts.TransactionalID, ts.ProducerID, ts.TransactionState = l.ID, l.ProducerID, l.State.String()
		resp.TransactionStates = append(resp.TransactionStates, ts)
	}
	return resp
}
