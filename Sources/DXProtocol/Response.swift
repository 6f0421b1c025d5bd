/// A response frame's payload, ICD §3: the echoed opcode, a status, and (status OK) the
/// result fields, kept raw here and read by the typed results below.
public struct Response: Sendable, Equatable {
    public var opcode: UInt16
    public var status: CommandStatus
    public var result: [UInt8]

    public init(opcode: UInt16, status: CommandStatus, result: [UInt8] = []) {
        self.opcode = opcode
        self.status = status
        self.result = status == .ok ? result : []
    }

    public var payload: [UInt8] {
        var w = WireWriter(capacity: 4 + result.count)
        w.u16(opcode)
        w.u16(status.rawValue)
        w.raw(result)
        return w.bytes
    }

    public init(payload: [UInt8]) throws(WireError) {
        var r = WireReader(payload)
        opcode = try r.u16("opcode")
        let raw = try r.u16("status")
        guard let s = CommandStatus(rawValue: raw) else { throw .invalidValue(field: "status", value: Int64(raw)) }
        status = s
        result = Array(payload.dropFirst(4))
        if s != .ok && !result.isEmpty { throw .trailingBytes(result.count) }
    }
}

/// A typed result that can be written to and read from a response's result bytes.
public protocol WireResult: Sendable, Equatable {
    func encode(into w: inout WireWriter)
    init(reading r: inout WireReader) throws(WireError)
}

extension WireResult {
    public var encoded: [UInt8] {
        var w = WireWriter()
        encode(into: &w)
        return w.bytes
    }

    /// Reads the whole of `bytes`; too few or too many bytes are an error.
    public init(decoding bytes: [UInt8]) throws(WireError) {
        var r = WireReader(bytes)
        self = try Self(reading: &r)
        try r.finish()
    }
}

/// GET_INFO's result.
public struct DeviceInfo: WireResult, Codable {
    public var model: String
    public var serial: String
    public var fwMajor: UInt16
    public var fwMinor: UInt16
    public var fwPatch: UInt16
    public var channels: UInt16
    public var pitchUm: UInt16
    public var energyLowKeV: UInt16
    public var energyHighKeV: UInt16
    public var maxLineRateHz: UInt16
    public var travelXUm: UInt32
    public var travelYUm: UInt32
    public var airZoneYUm: UInt32
    public var watchdogMs: UInt16

    /// JSON keys are the ICD's field names (capture headers, §7).
    /// The shortest line period the device accepts (µs): one line at its maximum line rate,
    /// rounded up (ICD §3 CONFIGURE_SCAN). A device that reports no rate accepts none.
    public var minLinePeriodUs: UInt64 {
        maxLineRateHz == 0 ? UInt64.max : (1_000_000 + UInt64(maxLineRateHz) - 1) / UInt64(maxLineRateHz)
    }

    public enum CodingKeys: String, CodingKey {
        case model, serial, channels
        case fwMajor = "fw_major", fwMinor = "fw_minor", fwPatch = "fw_patch"
        case pitchUm = "pitch_um", energyLowKeV = "energy_low_kev", energyHighKeV = "energy_high_kev"
        case maxLineRateHz = "max_line_rate_hz", travelXUm = "travel_x_um", travelYUm = "travel_y_um"
        case airZoneYUm = "air_zone_y_um", watchdogMs = "watchdog_ms"
    }

    public init(model: String, serial: String, fwMajor: UInt16, fwMinor: UInt16, fwPatch: UInt16,
                channels: UInt16, pitchUm: UInt16, energyLowKeV: UInt16, energyHighKeV: UInt16,
                maxLineRateHz: UInt16, travelXUm: UInt32, travelYUm: UInt32, airZoneYUm: UInt32, watchdogMs: UInt16) {
        self.model = model; self.serial = serial
        self.fwMajor = fwMajor; self.fwMinor = fwMinor; self.fwPatch = fwPatch
        self.channels = channels; self.pitchUm = pitchUm
        self.energyLowKeV = energyLowKeV; self.energyHighKeV = energyHighKeV
        self.maxLineRateHz = maxLineRateHz
        self.travelXUm = travelXUm; self.travelYUm = travelYUm; self.airZoneYUm = airZoneYUm
        self.watchdogMs = watchdogMs
    }

    public func encode(into w: inout WireWriter) {
        w.str(model); w.str(serial)
        w.u16(fwMajor); w.u16(fwMinor); w.u16(fwPatch)
        w.u16(channels); w.u16(pitchUm); w.u16(energyLowKeV); w.u16(energyHighKeV)
        w.u16(maxLineRateHz); w.u32(travelXUm); w.u32(travelYUm); w.u32(airZoneYUm); w.u16(watchdogMs)
    }

    public init(reading r: inout WireReader) throws(WireError) {
        model = try r.str("model"); serial = try r.str("serial")
        fwMajor = try r.u16("fw_major"); fwMinor = try r.u16("fw_minor"); fwPatch = try r.u16("fw_patch")
        channels = try r.u16("channels"); pitchUm = try r.u16("pitch_um")
        energyLowKeV = try r.u16("energy_low_kev"); energyHighKeV = try r.u16("energy_high_kev")
        maxLineRateHz = try r.u16("max_line_rate_hz")
        travelXUm = try r.u32("travel_x_um"); travelYUm = try r.u32("travel_y_um")
        airZoneYUm = try r.u32("air_zone_y_um"); watchdogMs = try r.u16("watchdog_ms")
    }

    public var firmware: String { "\(fwMajor).\(fwMinor).\(fwPatch)" }
}

/// GET_STATUS's result.
public struct DeviceStatus: WireResult, Codable {
    public var state: DeviceState
    public var interlocks: Interlocks
    public var xrayOn: Bool
    public var tubeTempX10: Int16
    public var detectorTempX10: Int16
    public var kvX10: UInt16
    public var tubeCurrentUA: UInt32
    public var armAngleX10: Int16
    public var xUm: Int32
    public var yUm: Int32
    public var fault: FaultCode
    public var activeScanID: UInt32

    public init(state: DeviceState, interlocks: Interlocks, xrayOn: Bool, tubeTempX10: Int16, detectorTempX10: Int16,
                kvX10: UInt16, tubeCurrentUA: UInt32, armAngleX10: Int16, xUm: Int32, yUm: Int32,
                fault: FaultCode, activeScanID: UInt32) {
        self.state = state; self.interlocks = interlocks; self.xrayOn = xrayOn
        self.tubeTempX10 = tubeTempX10; self.detectorTempX10 = detectorTempX10
        self.kvX10 = kvX10; self.tubeCurrentUA = tubeCurrentUA; self.armAngleX10 = armAngleX10
        self.xUm = xUm; self.yUm = yUm; self.fault = fault; self.activeScanID = activeScanID
    }

    public func encode(into w: inout WireWriter) {
        w.u8(state.rawValue); w.u16(interlocks.rawValue); w.u8(xrayOn ? 1 : 0)
        w.i16(tubeTempX10); w.i16(detectorTempX10); w.u16(kvX10); w.u32(tubeCurrentUA)
        w.i16(armAngleX10); w.i32(xUm); w.i32(yUm); w.u16(fault.rawValue); w.u32(activeScanID)
    }

    public init(reading r: inout WireReader) throws(WireError) {
        let s = try r.u8("state")
        guard let st = DeviceState(rawValue: s) else { throw .invalidValue(field: "state", value: Int64(s)) }
        state = st
        interlocks = Interlocks(rawValue: try r.u16("interlocks"))
        let x = try r.u8("xray_on")
        guard x <= 1 else { throw .invalidValue(field: "xray_on", value: Int64(x)) }
        xrayOn = x == 1
        tubeTempX10 = try r.i16("tube_temp"); detectorTempX10 = try r.i16("detector_temp")
        kvX10 = try r.u16("kv_x10"); tubeCurrentUA = try r.u32("tube_current_ua")
        armAngleX10 = try r.i16("arm_angle"); xUm = try r.i32("x_um"); yUm = try r.i32("y_um")
        fault = FaultCode(rawValue: try r.u16("fault")); activeScanID = try r.u32("active_scan_id")
    }
}

/// One SELF_TEST item.
public struct SelfTestItem: Sendable, Equatable, Codable {
    public enum Result: UInt8, Sendable, Codable, CustomStringConvertible {
        case pass = 0, warn = 1, fail = 2
        public var description: String { self == .pass ? "pass" : self == .warn ? "warn" : "FAIL" }
    }
    public var component: SelfTestComponent
    public var result: Result
    public var value: Int32
    public var code: UInt16

    public init(component: SelfTestComponent, result: Result, value: Int32, code: UInt16) {
        self.component = component; self.result = result; self.value = value; self.code = code
    }
}

/// SELF_TEST's result.
public struct SelfTestReport: WireResult, Codable {
    public var items: [SelfTestItem]
    public init(items: [SelfTestItem]) { self.items = items }

    public func encode(into w: inout WireWriter) {
        w.u16(UInt16(clamping: items.count))
        for i in items.prefix(Int(UInt16.max)) {
            w.u8(i.component.rawValue); w.u8(i.result.rawValue); w.i32(i.value); w.u16(i.code)
        }
    }

    public init(reading r: inout WireReader) throws(WireError) {
        let n = Int(try r.u16("count"))
        guard r.remaining >= n * 8 else { throw .truncated(field: "self-test items") }
        var items: [SelfTestItem] = []
        items.reserveCapacity(n)
        for _ in 0..<n {
            let c = try r.u8("component")
            let rr = try r.u8("result")
            guard let res = SelfTestItem.Result(rawValue: rr) else { throw .invalidValue(field: "result", value: Int64(rr)) }
            items.append(SelfTestItem(component: SelfTestComponent(rawValue: c), result: res, value: try r.i32("value"), code: try r.u16("code")))
        }
        self.items = items
    }
}

/// READ_SENSORS's result.
public struct SensorReadings: WireResult, Codable {
    public var tubeTempX10: Int16
    public var detectorTempX10: Int16
    public var generatorTempX10: Int16
    public var kvX10: UInt16
    public var tubeCurrentUA: UInt32
    public var supplyMv: UInt32
    public var darkMean: UInt16
    public var uptimeS: UInt32
    public var droppedLines: UInt32
    public var usbErrors: UInt32

    public init(tubeTempX10: Int16, detectorTempX10: Int16, generatorTempX10: Int16, kvX10: UInt16,
                tubeCurrentUA: UInt32, supplyMv: UInt32, darkMean: UInt16, uptimeS: UInt32,
                droppedLines: UInt32, usbErrors: UInt32) {
        self.tubeTempX10 = tubeTempX10; self.detectorTempX10 = detectorTempX10
        self.generatorTempX10 = generatorTempX10; self.kvX10 = kvX10; self.tubeCurrentUA = tubeCurrentUA
        self.supplyMv = supplyMv; self.darkMean = darkMean; self.uptimeS = uptimeS
        self.droppedLines = droppedLines; self.usbErrors = usbErrors
    }

    public func encode(into w: inout WireWriter) {
        w.i16(tubeTempX10); w.i16(detectorTempX10); w.i16(generatorTempX10); w.u16(kvX10)
        w.u32(tubeCurrentUA); w.u32(supplyMv); w.u16(darkMean); w.u32(uptimeS)
        w.u32(droppedLines); w.u32(usbErrors)
    }

    public init(reading r: inout WireReader) throws(WireError) {
        tubeTempX10 = try r.i16("tube_temp"); detectorTempX10 = try r.i16("detector_temp")
        generatorTempX10 = try r.i16("generator_temp"); kvX10 = try r.u16("kv_x10")
        tubeCurrentUA = try r.u32("tube_current_ua"); supplyMv = try r.u32("supply_mv")
        darkMean = try r.u16("dark_mean"); uptimeS = try r.u32("uptime_s")
        droppedLines = try r.u32("dropped_lines"); usbErrors = try r.u32("usb_errors")
    }
}

/// GET_LOG's result.
public struct LogChunk: WireResult, Codable {
    public var nextOffset: UInt32
    public var text: String
    public init(nextOffset: UInt32, text: String) { self.nextOffset = nextOffset; self.text = text }

    public func encode(into w: inout WireWriter) { w.u32(nextOffset); w.str(text) }
    public init(reading r: inout WireReader) throws(WireError) {
        nextOffset = try r.u32("next_offset"); text = try r.str("text")
    }
}

/// The empty result of commands that return nothing.
public struct EmptyResult: WireResult {
    public init() {}
    public func encode(into w: inout WireWriter) {}
    public init(reading r: inout WireReader) throws(WireError) {}
}
