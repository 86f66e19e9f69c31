module github.com/chatd/chatd

go 1.26.8

require (
	github.com/cloudwego/netpoll v0.7.2
	go.uber.org/goleak v1.3.0
	go.uber.org/zap v1.28.0
	golang.org/x/sys v0.49.0
)

require (
	github.com/bytedance/gopkg v0.1.1 // indirect
	github.com/cloudwego/gopkg v0.1.4 // indirect
	go.uber.org/multierr v1.10.0 // indirect
)
