package server

import (
	"errors"
	"fmt"
	"github.com/chatd/chatd/internal/store"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"go.uber.org/zap"
)

// BackupReport is what a backup wrote: `chatd backup` prints it.
type BackupReport struct {
	Dir      string        `json:"dir"`
	Files    int           `json:"files"`
	Bytes    int64         `json:"bytes"`
	NoiseKey bool          `json:"noise_key"` // the data folder's noise.key was copied
	VAPIDKey bool          `json:"vapid_key"` // and its vapid.key (push subscriptions are bound to it)
	Took     time.Duration `json:"took"`
}

// Backup writes a consistent copy of the data folder into dir, which must
// not exist yet, while the server keeps serving. The Pebble checkpoint
// flushes the WAL first, so it holds every write whose Sync commit had
// returned before the call: every message a sender got SENT for (SENT
// follows the WAL fsync) is in the copy. It hard-links sstables when dir is
// on the same file system, so it is quick and costs little space at first.
//
// Besides Pebble, the copy gets the Noise key when it lives in the data
// folder (clients pin it), and the VAPID key likewise (every push
// subscription was made for it). It leaves out Pebble's LOCK (the checkpoint has
// none), the EMERGENCY_BALLAST (recreated at start), and a cluster node's
// NATS folder: a restored node rejoins and takes the cluster's JetStream
// state from its peers, and an old copy of it would be a stale replica.
func (s *Server) Backup(dir string) (BackupReport, error) {
	start := time.Now()
	if dir == "" {
		return BackupReport{}, errors.New("backup: no destination folder")
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return BackupReport{}, fmt.Errorf("backup: %w", err)
	}
	if _, err := os.Lstat(abs); err == nil {
		return BackupReport{}, fmt.Errorf("backup: %s already exists; give a new folder", abs)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return BackupReport{}, fmt.Errorf("backup: %w", err)
	}
	if err := s.db.Checkpoint(abs, pebble.WithFlushedWAL()); err != nil {
		return BackupReport{}, fmt.Errorf("backup: checkpoint into %s: %w", abs, err)
	}
	rep := BackupReport{Dir: abs}
	if s.cfg.NoiseKey == "" { // the key is DataDir/noise.key
		src := filepath.Join(s.cfg.DataDir, "noise.key")
		if err := store.CopyFile(src, filepath.Join(abs, "noise.key")); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return rep, fmt.Errorf("backup: copy the Noise key: %w", err)
		} else if err == nil {
			rep.NoiseKey = true
		}
		// A key rotation's files: the next key, and the retired keys that
		// let a restored server tell old clients to verify again.
		for _, ext := range []string{".next", ".retired"} {
			if err := store.CopyFile(src+ext, filepath.Join(abs, "noise.key"+ext)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return rep, fmt.Errorf("backup: copy the Noise key%s: %w", ext, err)
			}
		}
	}
	if s.cfg.Push.KeyFile == "" { // DataDir/vapid.key
		src := filepath.Join(s.cfg.DataDir, "vapid.key")
		if err := store.CopyFile(src, filepath.Join(abs, "vapid.key")); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return rep, fmt.Errorf("backup: copy the VAPID key: %w", err)
		} else if err == nil {
			rep.VAPIDKey = true
		}
	}
	err = filepath.WalkDir(abs, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		rep.Files++
		rep.Bytes += info.Size()
		return nil
	})
	if err != nil {
		return rep, fmt.Errorf("backup: measure %s: %w", abs, err)
	}
	rep.Took = time.Since(start)
	s.log.Info("backup written", zap.String("dir", abs), zap.Int("files", rep.Files),
		zap.Int64("bytes", rep.Bytes), zap.Duration("took", rep.Took))
	return rep, nil
}

// backupAction runs `chatd backup`: POST /backup with dir.
func (s *Server) backupAction(form map[string][]string) (any, error) {
	var dir string
	if v := form["dir"]; len(v) > 0 {
		dir = v[0]
	}
	return s.Backup(dir)
}
