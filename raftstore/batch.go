package raftstore

import (
	"encoding/binary"
	"fmt"
)

// Batch is several commands carried by one log entry: Store.Apply groups
// the commands proposed at the same time (group commit), so that one append,
// one fsync per node and one replication round serve them all. The FSM
// applies them in order, at the entry's index, each one on its own: a
// refused command leaves no trace and does not refuse the others, and each
// proposer gets its own command's result or error.
//
// The entry is CmdBatch, a uvarint count, then for each command a uvarint
// length and the command's own entry (Encode): the commands are stored as
// they would be alone, with no second encoding.
type Batch struct {
	Commands []Command
}

// Type implements Command.
func (*Batch) Type() MessageType { return CmdBatch }

// batchResult is the response of a Batch: one result (or error) per command.
type batchResult []any

func (b *Batch) apply(tx *txn) (any, error) {
	out := make(batchResult, len(b.Commands))
	for i, c := range b.Commands {
		if c == nil {
			continue // an optional type this version does not know
		}
		resp, err := c.apply(tx)
		if err != nil {
			out[i] = err
		} else {
			out[i] = resp
		}
	}
	return out, nil
}

func (b *Batch) encode() ([]byte, error) {
	entries := make([][]byte, len(b.Commands))
	for i, c := range b.Commands {
		if c == nil {
			return nil, fmt.Errorf("encode batch: command %d is nil", i)
		}
		if _, ok := c.(*Batch); ok {
			return nil, fmt.Errorf("encode batch: command %d is a batch", i)
		}
		data, err := Encode(c)
		if err != nil {
			return nil, err
		}
		entries[i] = data
	}
	return encodeBatch(entries), nil
}

// encodeBatch frames encoded commands into one CmdBatch entry.
func encodeBatch(entries [][]byte) []byte {
	n := 1 + binary.MaxVarintLen64
	for _, e := range entries {
		n += binary.MaxVarintLen64 + len(e)
	}
	buf := make([]byte, 0, n)
	buf = append(buf, byte(CmdBatch))
	buf = binary.AppendUvarint(buf, uint64(len(entries)))
	for _, e := range entries {
		buf = binary.AppendUvarint(buf, uint64(len(e)))
		buf = append(buf, e...)
	}
	return buf
}

// decodeBatch reads the body of a CmdBatch entry (after its type byte).
func decodeBatch(data []byte) (Command, error) {
	count, k := binary.Uvarint(data)
	if k <= 0 {
		return nil, fmt.Errorf("decode batch: bad count")
	}
	data = data[k:]
	// Every command takes at least two bytes (a length and a type).
	if count == 0 || count > uint64(len(data))/2 {
		return nil, fmt.Errorf("decode batch: count %d does not fit %d bytes", count, len(data))
	}
	b := &Batch{Commands: make([]Command, 0, count)}
	for i := uint64(0); i < count; i++ {
		n, k := binary.Uvarint(data)
		if k <= 0 || n > uint64(len(data)-k) {
			return nil, fmt.Errorf("decode batch: command %d: bad length", i)
		}
		entry := data[k : k+int(n)]
		data = data[k+int(n):]
		if len(entry) > 0 && MessageType(entry[0]) == CmdBatch {
			return nil, fmt.Errorf("decode batch: command %d is a batch", i)
		}
		c, err := Decode(entry)
		if err != nil {
			return nil, fmt.Errorf("decode batch: command %d: %w", i, err)
		}
		b.Commands = append(b.Commands, c)
	}
	if len(data) != 0 {
		return nil, fmt.Errorf("decode batch: %d bytes after the last command", len(data))
	}
	return b, nil
}
