import Foundation
import Testing
@testable import DXProtocol

@Suite("ICD messages round-trip")
struct CodecTests {
    static let info = DeviceInfo(model: "DX-1", serial: "DX1-000123", fwMajor: 1, fwMinor: 4, fwPatch: 2, channels: 144,
                                 pitchUm: 1000, energyLowKeV: 40, energyHighKeV: 70, maxLineRateHz: 100,
                                 travelXUm: 400_000, travelYUm: 2_000_000, airZoneYUm: 1_900_000, watchdogMs: 1000)

    @Test func crcMatchesZlib() {
        #expect(CRC32.checksum(Array("123456789".utf8)) == 0xCBF4_3926)
        #expect(CRC32.checksum([]) == 0)
        // Slicing and bytewise paths agree on every length and alignment.
        let bytes = (0..<300).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }
        for n in 0..<40 {
            var c: UInt32 = 0xFFFF_FFFF
            for b in bytes.prefix(n) {
                c ^= UInt32(b)
                for _ in 0..<8 { c = (c & 1) != 0 ? (0xEDB8_8320 ^ (c >> 1)) : (c >> 1) }
            }
            #expect(CRC32.checksum(Array(bytes.prefix(n))) == ~c)
            #expect(Array(bytes.prefix(n)).withUnsafeBytes { CRC32.reference($0) } == ~c)
        }
        let long = (0..<100_003).map { UInt8(truncatingIfNeeded: $0 &* 2_654_435_761 >> 7) }
        #expect(CRC32.checksum(long) == long.withUnsafeBytes { CRC32.reference($0) })
        let half = CRC32.checksum(Array(long.prefix(5000)))
        #expect(CRC32.checksum(Array(long.dropFirst(5000)), continuing: half) == CRC32.checksum(long))
    }

    static let commands: [Command] = [
        .getInfo, .getStatus, .heartbeat, .home, .move(xUm: -5, yUm: 1_999_999, armAngle: 900),
        .configureScan(ScanConfiguration(scanID: 7, mode: .dual, xUm: 200_000, yStartUm: 10, lineCount: 300, lineStepUm: -1000,
                                         linePeriodUs: 10_000, tubeCurrentUA: 3000, linesPerFrame: 64)),
        .startScan(scanID: 7), .abortScan(scanID: .max), .xrayOff, .selfTest, .readSensors,
        .getLog(offset: 12, maxBytes: 4096), .setTime(unixUs: 1_790_000_000_000_000), .reset, .clearFault,
    ]

    @Test(arguments: commands)
    func commandRoundTrip(_ c: Command) throws {
        #expect(try Command(payload: c.payload) == c)
        // Too long and too short are MALFORMED (commands without parameters cannot be too short).
        #expect(throws: Command.DecodeError.self) { try Command(payload: c.payload + [0]) }
        if c.payload.count > 2 {
            #expect(throws: Command.DecodeError.self) { try Command(payload: Array(c.payload.dropLast())) }
        }
    }

    @Test func unknownOpcodeAndBadMode() {
        #expect(throws: Command.DecodeError.unknownOpcode(0x7777)) { try Command(payload: [0x77, 0x77]) }
        var p = Command.configureScan(ScanConfiguration(scanID: 1, mode: .dual, xUm: 0, yStartUm: 0, lineCount: 1, lineStepUm: 1,
                                                        linePeriodUs: 10_000, tubeCurrentUA: 1, linesPerFrame: 1)).payload
        p[6] = 9
        #expect(throws: Command.DecodeError.self) { try Command(payload: p) }
        do {
            _ = try Command(payload: p)
            Issue.record("an undefined mode was accepted")
        } catch {
            #expect(error.status == .badParams)
        }
    }

    @Test func resultsRoundTrip() throws {
        #expect(try DeviceInfo(decoding: Self.info.encoded) == Self.info)
        let status = DeviceStatus(state: .scanning, interlocks: [.roomDoorClosed, .tableLocked], xrayOn: true, tubeTempX10: -12,
                                  detectorTempX10: 251, kvX10: 1000, tubeCurrentUA: 3000, armAngleX10: 900, xUm: -1, yUm: 5,
                                  fault: .tubeArc, activeScanID: 99)
        #expect(try DeviceStatus(decoding: status.encoded) == status)
        let report = SelfTestReport(items: [SelfTestItem(component: .init(rawValue: 1), result: .warn, value: -3, code: 9)])
        #expect(try SelfTestReport(decoding: report.encoded) == report)
        let sensors = SensorReadings(tubeTempX10: 1, detectorTempX10: 2, generatorTempX10: 3, kvX10: 4, tubeCurrentUA: 5,
                                     supplyMv: 6, darkMean: 7, uptimeS: 8, droppedLines: 9, usbErrors: 10)
        #expect(try SensorReadings(decoding: sensors.encoded) == sensors)
        let log = LogChunk(nextOffset: 77, text: "héllo\nworld")
        #expect(try LogChunk(decoding: log.encoded) == log)
        #expect(throws: WireError.self) { try DeviceInfo(decoding: Array(Self.info.encoded.dropLast())) }
        #expect(throws: WireError.self) { try DeviceStatus(decoding: status.encoded + [1]) }
        var bad = status.encoded
        bad[0] = 42
        #expect(throws: WireError.self) { try DeviceStatus(decoding: bad) }
    }

    @Test func responseRoundTrip() throws {
        let r = Response(opcode: 1, status: .ok, result: Self.info.encoded)
        #expect(try Response(payload: r.payload) == r)
        let refused = Response(opcode: 0x21, status: .interlockOpen)
        #expect(try Response(payload: refused.payload) == refused)
        #expect(throws: WireError.self) { try Response(payload: [1, 0, 9, 0]) }
        #expect(throws: WireError.self) { try Response(payload: [1]) }
    }

    static let events: [Event] = [
        .stateChanged(old: .idle, new: .scanning), .motionDone(xUm: 1, yUm: -2, armAngle: 3),
        .scanStarted(scanID: 4, deviceTimeUs: .max), .scanComplete(scanID: 5, lines: 6, exposureMs: 7, dapX1000: 8),
        .scanAborted(scanID: 9, reason: .interlock, linesSent: 10), .interlocksChanged([.generatorReady]),
        .fault(code: .motorStall, message: "y drive stalled"), .watchdogExpired, .faultCleared(code: .motorStall),
    ]

    @Test(arguments: events)
    func eventRoundTrip(_ e: Event) throws {
        #expect(try Event(payload: e.payload) == e)
        #expect(throws: WireError.self) { try Event(payload: e.payload + [0]) }
    }

    @Test func dataFrameRoundTrip() throws {
        var lines: [ScanLine] = []
        for i in 0..<3 {
            let samples: [UInt16] = (0..<8).map { (k: Int) -> UInt16 in UInt16(k * 1000 + i) }
            lines.append(ScanLine(index: UInt32(10 + i), yUm: Int32(i * 1000), xUm: 200_000, tUs: UInt64(i) * 10_000,
                                  flags: [.xrayOn], samples: samples))
        }
        let frame = DataFrame(scanID: 3, firstLine: 10, channels: 4, lines: lines)
        let decoded = try DataFrame(payload: frame.payload)
        #expect(decoded == frame)
        #expect(decoded.lines[1].low(2) == 4001)
        #expect(decoded.lines[1].high(2) == 5001)
        #expect(throws: WireError.self) { try DataFrame(payload: Array(frame.payload.dropLast())) }
        #expect(throws: WireError.self) { try DataFrame(payload: frame.payload + [0]) }
        #expect(throws: WireError.self) { try DataFrame(payload: [1, 2, 3]) }
    }

    @Test func frameLayoutIsTheICDs() throws {
        let bytes = try Frame(kind: .command, seq: 0x0102_0304, payload: [0xAA]).encoded()
        #expect(Array(bytes.prefix(12)) == [0x44, 0x58, 1, 1, 4, 3, 2, 1, 1, 0, 0, 0])
        #expect(bytes[12] == 0xAA)
        let crc = CRC32.checksum(Array(bytes.prefix(13)))
        let expectedCRC: [UInt8] = withUnsafeBytes(of: crc.littleEndian) { Array($0) }
        #expect(Array(bytes.suffix(4)) == expectedCRC)
        #expect(throws: FrameError.self) { try Frame(kind: .data, seq: 1, payload: [UInt8](repeating: 0, count: Frame.maxPayload + 1)).encoded() }
    }

    @Test func configureScanRules() {
        func config(_ edit: (inout ScanConfiguration) -> Void) -> ScanConfiguration {
            var c = ScanConfiguration(scanID: 1, mode: .dual, xUm: 200_000, yStartUm: 100_000, lineCount: 200, lineStepUm: 1000,
                                      linePeriodUs: 10_000, tubeCurrentUA: 1000, linesPerFrame: 16)
            edit(&c)
            return c
        }
        #expect(config { _ in }.violation(for: Self.info) == nil)
        #expect(config { $0.scanID = 0 }.violation(for: Self.info) != nil)
        #expect(config { $0.lineCount = 0 }.violation(for: Self.info) != nil)
        #expect(config { $0.linesPerFrame = 0 }.violation(for: Self.info) != nil)
        #expect(config { $0.linesPerFrame = 65 }.violation(for: Self.info) != nil)
        #expect(config { $0.linesPerFrame = 64 }.violation(for: Self.info) == nil)
        #expect(config { $0.linePeriodUs = 9_999 }.violation(for: Self.info) != nil)
        #expect(config { $0.tubeCurrentUA = 3001 }.violation(for: Self.info) != nil)
        #expect(config { $0.lineCount = 60_001; $0.lineStepUm = 1 }.violation(for: Self.info) != nil)
        #expect(config { $0.lineCount = 60_000; $0.lineStepUm = 1 }.violation(for: Self.info) == nil)
        #expect(config { $0.xUm = 400_001 }.violation(for: Self.info) != nil)
        #expect(config { $0.yStartUm = 1_999_000; $0.lineCount = 2 }.violation(for: Self.info) == nil)
        #expect(config { $0.yStartUm = 1_999_001; $0.lineCount = 2 }.violation(for: Self.info) != nil)
        #expect(config { $0.lineStepUm = -1000; $0.yStartUm = 300_000 }.violation(for: Self.info) == nil)
        #expect(config { $0.lineStepUm = -1000; $0.yStartUm = 1000 }.violation(for: Self.info) != nil)
        #expect(config { $0.lineCount = .max; $0.lineStepUm = .max }.violation(for: Self.info) != nil)
    }

    @Test func sequenceTracker() {
        var t = SequenceTracker()
        for s: UInt32 in [1, 2, 3, 6, 7] { t.observe(s) }
        #expect(t.gaps == 1)
        #expect(t.missing == 2)
        t.observe(1)
        #expect(t.restarts == 1)
        t.observe(2)
        #expect(t.gaps == 1)
        t.observe(2)
        #expect(t.outOfOrder == 1)
    }
}
