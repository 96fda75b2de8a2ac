// A go-delayed peer for adelayed's interop tests: the real go-delayed worker, sweeper and
// producer, driven from the command line.
//
//	gopeer worker  ADDR QUEUE OUT   run a worker; each task run appends a line to OUT
//	gopeer sweep   ADDR QUEUE       run go-delayed's sweeper once (RequeueLost)
//	gopeer enqueue ADDR QUEUE HEX   enqueue a PyTask whose fields are the msgpack array HEX
//	gopeer gotask  ADDR QUEUE       print the hex of the Go tasks go-delayed writes
package main

import (
	"encoding/hex"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/keakon/golog"
	"github.com/keakon/golog/log"
	"github.com/shamaton/msgpack/v2"
	"github.com/yizhisec/go-delayed/delayed"
)

var (
	out   *os.File
	outMu sync.Mutex
)

// record appends "NAME HEX" to the output file: HEX is the msgpack of what the handler got.
func record(name string, value interface{}) {
	packed, err := msgpack.Marshal(value)
	if err != nil {
		packed = []byte("error: " + err.Error())
	}
	outMu.Lock()
	defer outMu.Unlock()
	fmt.Fprintf(out, "%s %s\n", name, hex.EncodeToString(packed))
	out.Sync()
}

// Ping takes no argument.
func Ping() { record("Ping", nil) }

// Echo takes any one value and records it.
func Echo(v interface{}) { record("Echo", v) }

// Add takes two ints.
func Add(a int64, b int64) { record("Add", a+b) }

// Sleep takes seconds to sleep, then records them (a task to kill a worker during).
func Sleep(seconds float64) {
	time.Sleep(time.Duration(seconds * float64(time.Second)))
	record("Sleep", seconds)
}

func setUpLog() {
	logger := golog.NewLogger(golog.DebugLevel)
	handler := golog.NewHandler(golog.DebugLevel, golog.DefaultFormatter)
	handler.AddWriter(golog.NewStderrWriter())
	logger.AddHandler(handler)
	log.SetDefaultLogger(logger)
}

func main() {
	if len(os.Args) < 4 {
		fmt.Fprintln(os.Stderr, "usage: gopeer worker|sweep|enqueue ADDR QUEUE [ARG]")
		os.Exit(2)
	}
	setUpLog()
	command, addr, name := os.Args[1], os.Args[2], os.Args[3]
	queue := delayed.NewQueue(name, delayed.NewRedisPool(addr),
		delayed.DequeueTimeout(200*time.Millisecond), delayed.KeepAliveTimeout(5*time.Second))
	switch command {
	case "worker":
		file, err := os.OpenFile(os.Args[4], os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
		if err != nil {
			panic(err)
		}
		out = file
		worker := delayed.NewWorker(queue, delayed.KeepAliveDuration(time.Second))
		worker.RegisterHandlers(Ping, Echo, Add, Sleep)
		fmt.Fprintln(os.Stderr, "gopeer worker running")
		worker.Run()
	case "sweep":
		count, err := queue.RequeueLost()
		if err != nil {
			panic(err)
		}
		fmt.Println(count)
	case "enqueue":
		raw, err := hex.DecodeString(os.Args[4])
		if err != nil {
			panic(err)
		}
		var fields []interface{}
		if err := msgpack.Unmarshal(raw, &fields); err != nil {
			panic(err)
		}
		var args, kwargs interface{}
		if len(fields) > 1 {
			args = fields[1]
		}
		if len(fields) > 2 {
			kwargs = fields[2]
		}
		if err := queue.Enqueue(delayed.NewPyTask(fields[0].(string), args, kwargs)); err != nil {
			panic(err)
		}
	case "gotask":
		for _, task := range []*delayed.GoTask{
			delayed.NewGoTask("main.Ping"), delayed.NewGoTask("main.Add", 1, 2),
		} {
			data, _ := task.Serialize()
			fmt.Println(hex.EncodeToString(data))
		}
	}
}
