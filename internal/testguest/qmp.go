package testguest

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"time"
)

// AttachDisk hot-plugs the qcow2 image at path into the running guest as a
// virtio disk with the given id, through qemu's QMP socket. The guest then
// lists it in /sys/block (vdb for the first one).
func (g *Guest) AttachDisk(ctx context.Context, id, path string) error {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", g.QMPPath)
	if err != nil {
		return fmt.Errorf("qmp: %w", err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	} else {
		conn.SetDeadline(time.Now().Add(30 * time.Second))
	}
	r := bufio.NewReader(conn)
	if _, err := r.ReadBytes('\n'); err != nil { // greeting
		return fmt.Errorf("qmp greeting: %w", err)
	}
	for _, cmd := range []map[string]any{
		{"execute": "qmp_capabilities"},
		{"execute": "blockdev-add", "arguments": map[string]any{
			"driver": "qcow2", "node-name": id,
			"file": map[string]any{"driver": "file", "filename": path},
		}},
		{"execute": "device_add", "arguments": map[string]any{
			"driver": "virtio-blk-pci", "drive": id, "id": id,
		}},
	} {
		if err := qmpRun(conn, r, cmd); err != nil {
			return err
		}
	}
	return nil
}

// qmpRun sends one command and reads up to its reply, skipping events.
func qmpRun(conn net.Conn, r *bufio.Reader, cmd map[string]any) error {
	b, _ := json.Marshal(cmd)
	if _, err := conn.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("qmp %s: %w", cmd["execute"], err)
	}
	for {
		line, err := r.ReadBytes('\n')
		if err != nil {
			return fmt.Errorf("qmp %s: %w", cmd["execute"], err)
		}
		var reply struct {
			Event  string          `json:"event"`
			Return json.RawMessage `json:"return"`
			Error  *struct {
				Class, Desc string
			} `json:"error"`
		}
		if err := json.Unmarshal(line, &reply); err != nil {
			return fmt.Errorf("qmp %s: reply %q: %w", cmd["execute"], line, err)
		}
		switch {
		case reply.Event != "":
			continue
		case reply.Error != nil:
			return fmt.Errorf("qmp %s: %s: %s", cmd["execute"], reply.Error.Class, reply.Error.Desc)
		default:
			return nil
		}
	}
}
