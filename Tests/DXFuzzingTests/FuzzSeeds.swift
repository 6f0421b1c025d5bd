import DXAcquisition
import DXClinical
import DXControl
import DXDecomposition
import DXDicom
@testable import DXFuzzing
import DXProtocol
import DXSimulator
import DXTestSupport
import Foundation
import Testing

/// The seeds the fuzzer starts from: real frames, a real capture, real requests and files, and
/// simulated patients, made here from the same encoders and the simulator. The test makes them
/// and holds each to reaching past its parser; `DEXA_FUZZ_WRITE_SEEDS=1` also writes them to
/// Tests/Fuzz/corpus (the committed seeds, which `FuzzCorpusTests` replays).
@Suite("Fuzz seeds", .serialized)
struct FuzzSeedTests {
    @Test func theSeedsReachPastTheirParsers() async throws {
        let seeds = try await FuzzSeeds.make()
        for target in FuzzTarget.allCases {
            #expect((seeds[target]?.count ?? 0) >= 2, "\(target.rawValue)")
        }
        for (target, files) in seeds.sorted(by: { $0.key.rawValue < $1.key.rawValue }) {
            for (name, bytes) in files.sorted(by: { $0.key < $1.key }) {
                let outcome = target.run(bytes)
                print("\(target.rawValue)/\(name) (\(bytes.count) bytes): \(outcome)")
                #expect(outcome.accepted, "\(target.rawValue)/\(name): \(outcome)")
                #expect(FuzzSeeds.reachesItsDepth(target, outcome), "\(target.rawValue)/\(name): \(outcome)")
            }
        }
        if ProcessInfo.processInfo.environment["DEXA_FUZZ_WRITE_SEEDS"] == "1" {
            for (target, files) in seeds {
                let dir = "\(FuzzCorpusTests.root)/corpus/\(target.rawValue)"
                try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
                for (name, bytes) in files { try Data(bytes).write(to: URL(fileURLWithPath: "\(dir)/\(name)")) }
            }
        }
    }
}

enum FuzzSeeds {
    static let info = SimulatorConfiguration.standardInfo

    /// Past the parser is not enough for a seed of the deep targets: the capture's must be
    /// analysed, the images' measured, every frame of a frame seed readable.
    static func reachesItsDepth(_ target: FuzzTarget, _ outcome: FuzzOutcome) -> Bool {
        let text = outcome.description
        switch target {
        case .capture: return text.contains("scans analysed")
        case .analysis, .decomposed: return !text.contains("not analysed")
        case .frames:
            guard let frames = text.firstMatch(of: /accepted: (\d+) frames \((\d+) readable\)/) else { return false }
            return frames.1 == frames.2
        default: return true
        }
    }

    static func make() async throws -> [FuzzTarget: [String: [UInt8]]] {
        var seeds: [FuzzTarget: [String: [UInt8]]] = [:]
        seeds[.frames] = try frames()
        seeds[.payloads] = try payloads()
        seeds[.capture] = try capture()
        seeds[.rpc] = rpc()
        seeds[.config] = config()
        seeds[.examProtocol] = try examProtocol()
        seeds[.phantom] = try phantoms()
        seeds[.reference] = reference()
        seeds[.calibration] = ["simulated-unit.json": Array(try Data(contentsOf: URL(fileURLWithPath: CalibrationFixture.path)))]
            .merging(["other-unit.json": try otherUnitCalibration()]) { a, _ in a }
        let (decomposed, analysis) = try patientImages()
        seeds[.decomposed] = decomposed
        seeds[.analysis] = analysis
        seeds[.controlStream] = controlStream(seeds[.rpc] ?? [:])
        seeds[.qcHistory] = try qcHistories()
        seeds[.scene] = try scenes()
        seeds[.captureSummary] = seeds[.capture]
        seeds[.dicomConfig] = [
            "full.conf": Array("""
                # the station
                ae_title = DEXA1
                station_name = DX1-ROOM4
                institution = St Example Hospital
                uid_root = 1.2.826.0.1.3680043.10.9
                worklist = RIS@ris.example:11112
                worklist_modality = BMD
                mpps = RIS@ris.example:11113
                storage = PACS@pacs.example:104
                commitment = PACS@pacs.example:104
                listen_port = 11114
                connect_timeout_s = 5
                association_timeout_s = 10
                message_timeout_s = 30

                """.utf8),
            "peers.conf": Array("ae_title = DEXA1\nworklist = RIS@127.0.0.1:11112\nstorage = PACS@[::1]:104\nworklist_modality = any\n".utf8),
        ]
        return seeds
    }

    /// The rpc seeds as one stream, read 7 bytes and 1 byte at a time; and short requests
    /// under the 64-byte line limit, which the fuzzer's longer lines then exceed.
    static func controlStream(_ rpc: [String: [UInt8]]) -> [String: [UInt8]] {
        let stream: [UInt8] = rpc.sorted { $0.key < $1.key }.flatMap { $0.value + [UInt8(0x0A)] }
        let short = Array((#"{"jsonrpc":"2.0","id":1,"method":"device.status"}"# + "\n" + #"{"jsonrpc":"2.0","id":2,"method":"qc.status"}"# + "\n").utf8)
        return ["reads-of-7.bin": [6, 0] + stream, "reads-of-1.bin": [0, 0] + stream, "limit-64.bin": [63, 1] + short]
    }

    /// Saved QC histories as the daemon writes them (`dexa qc history --json`): 24 scans of the
    /// ESP phantom's three ROIs around 0.5, 1.0 and 1.5 g/cm², the second half 0.4 % higher;
    /// and a short one, still filling its baseline.
    static func qcHistories() throws -> [String: [UInt8]] {
        func history(_ n: Int) throws -> [UInt8] {
            let start = Date(timeIntervalSince1970: 1_764_000_000)
            let measurements = (0..<n).map { i in
                let shift = i >= n / 2 ? 1.004 : 1.0, wobble = 1 + 0.002 * Double((i * 7) % 5 - 2)
                return QualityControl.Measurement(id: Int64(i + 1), at: start.addingTimeInterval(Double(i) * 86_400),
                                                  bmdGCm2: ["L1": 0.5 * shift * wobble, "L2": 1.0 * shift * wobble, "L3": 1.5 * shift * wobble])
            }
            let rules = QualityControl.Rules()
            let state = QualityControl.evaluate(measurements, rules: rules)
            let gate = QualityControl.gate(state, at: start, lastScan: measurements.last?.at, override: nil, policy: .warn, calendar: .current)
            let result = QCStatusResult(device: "DX1-SIM-0001", state: state, history: QCHistory(measurements: measurements, reset: nil), rules: rules,
                                        due: false, withPoints: true, gate: gate, whenDue: .warn, override: nil)
            return Array(try JSONEncoder().encode(result))
        }
        return ["24-scans.json": try history(24), "baseline-filling.json": try history(6)]
    }

    /// What `dexa-sim --phantom FILE` reads: a simulated patient of the studies, one with a
    /// fracture and a hip prosthesis, and the standard phantoms.
    static func scenes() throws -> [String: [UInt8]] {
        func patient(_ spec: PatientSpec) throws -> [UInt8] {
            Array(try JSONSerialization.data(withJSONObject: ["patient": try JSONSerialization.jsonObject(with: JSONEncoder().encode(spec))]))
        }
        return ["patient-7001.json": try patient(PatientVariety.patient(seed: 7001)),
                "patient-fractured.json": try patient(PatientVariety.patient(seed: 12, lateralFractures: 2)),
                "patient-prosthesis.json": try patient(PatientVariety.patient(seed: 5, with: .prosthesis)),
                "patient-overlay.json": Array(#"{"patient": {"softTissue": 22}}"#.utf8),
                "esp.json": Array(try JSONEncoder().encode(StandardPhantoms.esp)),
                "calibration.json": Array(try JSONEncoder().encode(StandardPhantoms.calibration))]
    }

    // MARK: - The bus

    static func frame(_ kind: FrameKind, _ seq: UInt32, _ payload: [UInt8]) throws -> [UInt8] {
        try Frame(kind: kind, seq: seq, payload: payload).encoded()
    }

    static func frames() throws -> [String: [UInt8]] {
        let scan = ScanConfiguration(scanID: 7, mode: .dual, xUm: 200_000, yStartUm: 580_000, lineCount: 4, lineStepUm: 1000,
                                     linePeriodUs: 10_000, tubeCurrentUA: 400, linesPerFrame: 2)
        let commands: [Command] = [.getInfo, .getStatus, .heartbeat, .home, .move(xUm: 1000, yUm: 2000, armAngle: 900), .configureScan(scan),
                                   .startScan(scanID: 7), .abortScan(scanID: 7), .xrayOff, .selfTest, .readSensors,
                                   .getLog(offset: 0, maxBytes: 512), .setTime(unixUs: 1_764_000_000_000_000), .reset, .clearFault]
        var host: [UInt8] = [0]
        for (i, c) in commands.enumerated() { host += try frame(.command, UInt32(i), c.payload) }

        let status = DeviceStatus(state: .scanning, interlocks: .allClosed, xrayOn: true, tubeTempX10: 312, detectorTempX10: 251, kvX10: 700,
                                  tubeCurrentUA: 400, armAngleX10: 0, xUm: 200_000, yUm: 580_000, fault: .none, activeScanID: 7)
        let results: [(Opcode, [UInt8])] = [
            (.getInfo, info.encoded), (.getStatus, status.encoded),
            (.selfTest, SelfTestReport(items: [.init(component: SelfTestComponent(rawValue: 1), result: .pass, value: 12, code: 0),
                                               .init(component: SelfTestComponent(rawValue: 2), result: .warn, value: -3, code: 7)]).encoded),
            (.readSensors, SensorReadings(tubeTempX10: 300, detectorTempX10: 250, generatorTempX10: 280, kvX10: 700, tubeCurrentUA: 400,
                                          supplyMv: 24_000, darkMean: 100, uptimeS: 3600, droppedLines: 0, usbErrors: 0).encoded),
            (.getLog, LogChunk(nextOffset: 17, text: "boot ok\nhome ok\n").encoded),
            (.heartbeat, []),
        ]
        var device: [UInt8] = [7]
        for (i, (op, result)) in results.enumerated() { device += try frame(.response, UInt32(i), Response(opcode: op.rawValue, status: .ok, result: result).payload) }
        device += try frame(.response, 6, Response(opcode: Opcode.startScan.rawValue, status: .busy).payload)
        let events: [Event] = [.stateChanged(old: .idle, new: .ready), .motionDone(xUm: 1, yUm: 2, armAngle: 0),
                               .scanStarted(scanID: 7, deviceTimeUs: 99), .scanComplete(scanID: 7, lines: 4, exposureMs: 40, dapX1000: 12),
                               .scanAborted(scanID: 7, reason: .interlock, linesSent: 2), .interlocksChanged(.allClosed),
                               .fault(code: .tubeArc, message: "arc"), .watchdogExpired, .faultCleared(code: .tubeArc)]
        var eventStream: [UInt8] = [3]
        for (i, e) in events.enumerated() { eventStream += try frame(.event, UInt32(i), e.payload) }

        let samples = (0..<(2 * 16)).map { UInt16(1000 + $0 * 37) }
        let lines = (0..<2).map { i in ScanLine(index: UInt32(i), yUm: 580_000 + Int32(i) * 1000, xUm: 200_000, tUs: UInt64(i) * 10_000, flags: [.xrayOn], samples: samples) }
        var data: [UInt8] = [64]
        data += try frame(.data, 0, DataFrame(scanID: 7, firstLine: 0, channels: 16, lines: lines).payload)
        // A corrupted byte between two frames: the decoder resynchronises.
        var corrupted = data
        corrupted += [0x44, 0x58, 0x01, 0xFF] + (try frame(.data, 1, DataFrame(scanID: 7, firstLine: 2, channels: 16, lines: lines).payload))
        return ["host-commands": host, "device-responses": device, "device-events": eventStream, "data": data, "data-resync": corrupted]
    }

    /// Every payload of the frame seeds, straight, with its kind's selector byte; and a sim
    /// link stream (the records a `dexa-sim` process sends).
    static func payloads() throws -> [String: [UInt8]] {
        var out: [String: [UInt8]] = [:]
        let frames = try frames()
        for (name, stream) in frames {
            var decoder = FrameDecoder()
            decoder.append(stream.dropFirst())
            var i = 0
            while let f = decoder.next() {
                let selector: UInt8 = switch f.kind { case .command: 0; case .response: 1; case .event: 2; case .data: 3 }
                out["\(name)-\(i)"] = [selector] + f.payload
                i += 1
            }
        }
        let link = [CaptureRecord(tUs: 1, endpoint: .dataIn, bytes: frames["data", default: []].dropFirst().map { $0 }),
                    CaptureRecord(tUs: 2, endpoint: .responseIn, bytes: frames["device-events", default: []].dropFirst().map { $0 })]
        out["sim-link"] = [4] + link.flatMap(\.encoded)
        return out
    }

    /// A capture as the daemon records one: dark, air and 24 lines over the standard patient's
    /// lumbar spine, through the simulator's detector (144 channels).
    static func capture() throws -> [String: [UInt8]] {
        var scanner = TableScanner(seed: 14)
        func config(_ id: UInt32, _ mode: ScanMode, y: Int32, lines: UInt32) -> ScanConfiguration {
            ScanConfiguration(scanID: id, mode: mode, xUm: 200_000, yStartUm: y, lineCount: lines, lineStepUm: 1000,
                              linePeriodUs: id == 3 ? 1_000_000 : 10_000, tubeCurrentUA: id == 3 ? 400 : 1000, linesPerFrame: 4)
        }
        // Dark and air at the daemon's reference exposure (10 ms at 1 mA), then the spine.
        let dark = config(1, .dark, y: 1_900_000, lines: 4), air = config(2, .dual, y: 1_900_000, lines: 4)
        let spine = config(3, .dual, y: 640_000, lines: 24)
        var header = CaptureHeader(device: info, created: Date(timeIntervalSince1970: 1_764_000_000),
                                   scans: [.init(scanID: 1, role: .dark), .init(scanID: 2, role: .air), .init(scanID: 3, role: .patient, region: .apSpine)])
        header.patient = CapturePatient(sex: "female", birthDate: "1956-03-01")
        var bytes = try CaptureFormat.preamble(header)
        var seq: UInt32 = 0, dataSeq: UInt32 = 0, t: UInt64 = 0
        let scans: [(ScanConfiguration, any Scene)] = [(dark, EmptyTable()), (air, EmptyTable()), (spine, PatientScene())]
        for (c, scene) in scans {
            bytes += CaptureRecord(tUs: t, endpoint: .commandOut, bytes: try frame(.command, seq, Command.configureScan(c).payload)).encoded
            seq += 1
            let lines = scanner.lines(scene, mode: c.mode, c)
            for first in stride(from: 0, to: lines.count, by: Int(c.linesPerFrame)) {
                let chunk = Array(lines[first..<min(lines.count, first + Int(c.linesPerFrame))])
                let payload = DataFrame(scanID: c.scanID, firstLine: UInt32(first), channels: info.channels, lines: chunk).payload
                t += 1000
                bytes += CaptureRecord(tUs: t, endpoint: .dataIn, bytes: try frame(.data, dataSeq, payload)).encoded
                dataSeq += 1
            }
        }
        // The same capture cut short inside its last record (a crash while writing).
        return ["ap-spine-24-lines.dxcap": bytes, "ap-spine-truncated.dxcap": Array(bytes.dropLast(300))]
    }

    // MARK: - The control socket and files

    static func rpc() -> [String: [UInt8]] {
        let lines = [
            "scan-run": #"{"jsonrpc":"2.0","id":1,"method":"scan.run","params":{"mode":"dual","x_um":200000,"y_start_um":580000,"lines":10,"line_step_um":1000,"line_period_us":10000,"tube_current_ua":400}}"#,
            "exam-create": #"{"jsonrpc":"2.0","id":"a","method":"exam.create","params":{"patient":{"id":"P1","name":"Test^Patient","sex":"female","birth_date":"1956-03-01"},"referral":"Dr Who, fracture clinic"}}"#,
            "exam-correct": #"{"jsonrpc":"2.0","id":3,"method":"exam.correct","params":{"exam_id":4,"site":"lateral_spine","vertebra_grade":{"vertebra":"T10","grade":2,"type":"crush"},"reason":"reader"}}"#,
            "device-move": #"{"jsonrpc":"2.0","id":4,"method":"device.move","params":{"x_um":1000,"y_um":2000,"arm_angle_deg":90}}"#,
            "unknown-key": #"{"jsonrpc":"2.0","id":5,"method":"scan.run","params":{"tube_curent_ua":400}}"#,
            "response": #"{"jsonrpc":"2.0","id":1,"result":{"subscribed":true}}"#,
            "notification": #"{"jsonrpc":"2.0","method":"scan.progress","params":{"scan_id":3,"lines":10,"of":100}}"#,
            "error": #"{"jsonrpc":"2.0","id":9,"error":{"code":-32602,"message":"invalid params"}}"#,
        ]
        return lines.mapValues { Array($0.utf8) }
    }

    static func config() -> [String: [UInt8]] {
        let full = """
        # /etc/dexa/dexad.conf
        socket = /run/dexa/control.sock
        device = usb
        state_directory = /var/lib/dexa
        record_captures = true
        log_level = info
        technologist_group = dexa
        service_group = dexa-service
        audit_log = /var/log/dexa/audit.log
        socket_mode = 0660
        exam_protocol = /etc/dexa/protocol.json
        qc_baseline_scans = 10
        qc_when_due = warn
        qc_day_starts = 06:30
        command_timeout_ms = 2000
        dap_per_mas_mgy_cm2 = 0.8
        """
        let simulator = "device = simulator\nsimulator_seed = 7\ntime_scale = 10\nsimulator_physics = cdte # second model\n"
        return ["site.conf": Array(full.utf8), "simulator.conf": Array(simulator.utf8)]
    }

    static func examProtocol() throws -> [String: [UInt8]] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let overlay = #"{"motion_limit_mm": 3, "sites": {"ap_spine": {"lines": 240}}, "budget_minutes": [10, 30]}"#
        return ["standard.json": Array(try encoder.encode(ExamProtocol.standard)), "overlay.json": Array(overlay.utf8)]
    }

    static func phantoms() throws -> [String: [UInt8]] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return ["calibration.json": Array(try encoder.encode(StandardPhantoms.calibration)),
                "esp.json": Array(try encoder.encode(StandardPhantoms.esp)),
                "bench.json": Array(try encoder.encode(StandardPhantoms.bench))]
    }

    static func reference() -> [String: [UInt8]] {
        let synthetic = """
        {"name":"SYNTHETIC (fuzz seed)","version":"0","population":"none","scale":"none","source":{"text":"invented"},"status":"secondary",
         "tables":[{"site":"L1-L4","sex":"female","bands":[{"age_from":20,"age_to":40,"mean_g_cm2":1.05,"sd_g_cm2":0.12},
                                                                   {"age_from":40,"age_to":50,"mean_g_cm2":1.02,"sd_g_cm2":0.12,"n":300}]},
                   {"site":"neck","sex":"male","bands":[{"age_from":20,"age_to":50,"mean_g_cm2":0.93,"sd_g_cm2":0.13}]}]}
        """
        let one = #"{"name":"one band","version":"1","population":"p","scale":"s","source":{"text":"t"},"status":"secondary","tables":[{"site":"total_hip","sex":"male","bands":[{"age_from":20,"age_to":90,"mean_g_cm2":1.0,"sd_g_cm2":0.14}]}]}"#
        return ["synthetic.json": Array(synthetic.utf8), "one-band.json": Array(one.utf8)]
    }

    /// The fixture as if made on another unit: read and judged, then found not this unit's.
    static func otherUnitCalibration() throws -> [UInt8] {
        var calibration = try JSONDecoder().decode(Calibration.self, from: Data(contentsOf: URL(fileURLWithPath: CalibrationFixture.path)))
        calibration.unit?.serial = "DX1-999999"
        return Array(try JSONEncoder().encode(calibration))
    }

    // MARK: - Images

    /// Simulated patients: the AP spine and both hips at 2 mm pixels (72 channels of 2 mm,
    /// lines of 2 mm), the lateral spine at 1.5 mm (96 channels; the morphometry takes 0.5 to
    /// 1.5 mm), as `.dxdec` files and as the analysis target's image form.
    static func patientImages() throws -> ([String: [UInt8]], [String: [UInt8]]) {
        var coarse = TableScanner(seed: 2026, channels: 72, pitchUm: 2000)
        var lateral = TableScanner(seed: 2027, channels: 96, pitchUm: 1500)
        func scan(x: Int32, y: Int32, lines: UInt32, step: Int32, period: UInt32, current: UInt32) -> ScanConfiguration {
            ScanConfiguration(scanID: 1, mode: .dual, xUm: x, yStartUm: y, lineCount: lines, lineStepUm: step, linePeriodUs: period,
                              tubeCurrentUA: current, linesPerFrame: 1)
        }
        let scene = PatientScene()
        let sites: [(String, ScanConfiguration, Int16)] = [
            ("ap_spine", scan(x: 200_000, y: 580_000, lines: 110, step: 2000, period: 1_000_000, current: 400), 0),
            ("left_hip", scan(x: 300_000, y: 860_000, lines: 75, step: 2000, period: 1_200_000, current: 333), 0),
            ("right_hip", scan(x: 100_000, y: 860_000, lines: 75, step: 2000, period: 1_200_000, current: 333), 0),
            ("lateral_spine", scan(x: 185_000, y: 320_000, lines: 253, step: 1500, period: 500_000, current: 800), 900),
        ]
        var decomposed: [String: [UInt8]] = [:], images: [String: [UInt8]] = [:]
        for (region, config, arm) in sites {
            let d = region == "lateral_spine" ? try lateral.decompose(scene, config, region: region, armAngleX10: arm)
                : try coarse.decompose(scene, config, region: region, armAngleX10: arm)
            if region == "ap_spine" || region == "left_hip" { decomposed["\(region).dxdec"] = try d.encoded() }
            images["\(region).img"] = AnalysisImage.bytes(of: d)
        }
        return (decomposed, images)
    }
}
