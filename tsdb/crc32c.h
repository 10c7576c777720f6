/*
 * tsdb/crc32c.h: CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), the checksum of the WAL
 * fragments, the index and the tombstones, as Go's crc32.MakeTable(crc32.Castagnoli) computes it.
 *
 * The first call picks an implementation: the SSE4.2 crc32 instruction when the CPU has it
 * (x86-64, checked with __builtin_cpu_supports), else a slicing-by-8 table. Both give the same
 * values; crc32c_update_table and crc32c_update_hardware are exported so tests can compare them.
 * All functions are thread-safe.
 */
#ifndef CAIRN_TSDB_CRC32C_H
#define CAIRN_TSDB_CRC32C_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Continues a checksum: crc32c_update(crc32c(a), b) == crc32c(a followed by b), and
 * crc32c_update(0, data, len) == crc32c(data, len). */
uint32_t crc32c_update(uint32_t crc, const void *data, size_t len);

/* The CRC-32C of len bytes; crc32c("123456789", 9) == 0xE3069283. */
uint32_t crc32c(const void *data, size_t len);

/* True if crc32c_update uses the SSE4.2 instruction. */
bool crc32c_hardware_available(void);

/* The two implementations behind crc32c_update, same contract. crc32c_update_hardware may only
 * be called when crc32c_hardware_available() is true. */
uint32_t crc32c_update_table(uint32_t crc, const void *data, size_t len);
uint32_t crc32c_update_hardware(uint32_t crc, const void *data, size_t len);

#endif /* CAIRN_TSDB_CRC32C_H */
