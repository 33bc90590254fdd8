/*
 * ap_cmd_events: `adplatform events dump --data-dir DIR [--from POS] [--type T]`: prints the
 * event log's records as JSON lines (offline tool: reads the segment files with the log's
 * reader API; safe while a daemon appends, it then stops at the last whole record). Exit code
 * 0, 1 on a corrupt frame (after printing everything before it), 2 on bad usage.
 */
#ifndef AP_CMD_EVENTS_H
#define AP_CMD_EVENTS_H

int ap_cmd_events(int argc, char **argv);

#endif
