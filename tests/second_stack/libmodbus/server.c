/* An independent Modbus TCP server on Debian's libmodbus, for the connector tests and for
 * bench/bench_modbus_influx.py.
 *
 * Usage: server PORT            holding registers 0..9 (any unit id), for the tests:
 *   0: 1234 (uint16)   1-2: 12.5 as float32 ABCD   3-4: 4000000001 as uint32 ABCD
 *   5: 0xFFFF (int16 -1)   6..9: 0 (a test writes alarm bits and words there)
 *   Addresses from 10 on are answered with exception 2 (illegal data address) by libmodbus.
 *   Coils 0..7: off, writable (alarm bits).
 *        server PORT --moving   holding registers 0..124 (any unit id), for the bench: every
 *   answer moves the values on (register i holds (reads + i) mod 65536), so each read stores
 *   changing data.
 * Serves several clients at once (select) and answers pipelined requests in order (a request
 * left in the socket buffer makes select report the socket again). Prints "READY" once listening.
 */
#include <errno.h>
#include <modbus.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <unistd.h>

#define MOVING_REGISTERS 125

static void fixed_values(modbus_mapping_t *map) {
    map->tab_registers[0] = 1234;
    /* 12.5 = 0x41480000, written as words: libmodbus 3.1.6's modbus_set_float_abcd swaps the
     * bytes within each word on little-endian machines (it yields 0x4841 0x0000). */
    map->tab_registers[1] = 0x4148;
    map->tab_registers[2] = 0x0000;
    map->tab_registers[3] = 4000000001u >> 16;
    map->tab_registers[4] = 4000000001u & 0xFFFF;
    map->tab_registers[5] = 0xFFFF;
}

int main(int argc, char **argv) {
    int moving = argc == 3 && strcmp(argv[2], "--moving") == 0;
    if (argc != 2 && !moving) {
        fprintf(stderr, "usage: %s PORT [--moving]\n", argv[0]);
        return 2;
    }
    int registers = moving ? MOVING_REGISTERS : 10;
    modbus_t *ctx = modbus_new_tcp("127.0.0.1", atoi(argv[1]));
    modbus_mapping_t *map = modbus_mapping_new(moving ? 0 : 8, 0, registers, 0);
    if (ctx == NULL || map == NULL) {
        fprintf(stderr, "libmodbus: %s\n", modbus_strerror(errno));
        return 1;
    }
    if (!moving) fixed_values(map);
    int listener = modbus_tcp_listen(ctx, 64);
    if (listener < 0) {
        fprintf(stderr, "listen: %s\n", modbus_strerror(errno));
        return 1;
    }
    printf("READY\n");
    fflush(stdout);
    fd_set all;
    FD_ZERO(&all);
    FD_SET(listener, &all);
    int top = listener;
    unsigned reads = 0;
    uint8_t query[MODBUS_TCP_MAX_ADU_LENGTH];
    for (;;) {
        fd_set ready = all;
        if (select(top + 1, &ready, NULL, NULL, NULL) < 0) {
            if (errno == EINTR) continue;
            return 1;
        }
        for (int fd = 0; fd <= top; fd++) {
            if (!FD_ISSET(fd, &ready)) continue;
            if (fd == listener) {
                int client = modbus_tcp_accept(ctx, &listener);
                if (client >= 0) {
                    FD_SET(client, &all);
                    if (client > top) top = client;
                }
                continue;
            }
            modbus_set_socket(ctx, fd);
            int length = modbus_receive(ctx, query);
            if (length > 0) {
                reads++;
                for (int i = 0; moving && i < registers; i++)
                    map->tab_registers[i] = (uint16_t)(reads + i);
                modbus_reply(ctx, query, length, map);
            } else if (length < 0) {
                close(fd);
                FD_CLR(fd, &all);
            }
        }
    }
}
