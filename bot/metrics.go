package bot

import "time"

// metrics counts what operators watch. The zero value counts nothing.
type metrics struct{}

func (m *metrics) slackRetry(method string)                        {}
func (m *metrics) slackError(method string)                        {}
func (m *metrics) command(text string)                             {}
func (m *metrics) connected()                                      {}
func (m *metrics) disconnected()                                   {}
func (m *metrics) poll(target string, took time.Duration, ok bool) {}
func (m *metrics) alert(kind string)                               {}
