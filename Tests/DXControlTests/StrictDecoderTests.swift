import DXAcquisition
import DXControl
import Foundation
import Testing

/// Parameters are decoded strictly: a key a method does not know is refused with its path,
/// at any depth; types, ranges and missing fields are named.
@Suite struct StrictDecoderTests {
    func json(_ text: String) throws -> JSONValue { try JSONDecoder().decode(JSONValue.self, from: Data(text.utf8)) }

    func failure<T: Decodable>(_ type: T.Type, _ text: String) throws -> StrictDecoder.Failure? {
        let value = try json(text)
        do { _ = try StrictDecoder.decode(T.self, from: value); return nil } catch { return error }
    }

    @Test func aMisspeltScanParameterIsRefusedNotDefaulted() throws {
        let e = try #require(try failure(ScanRunParams.self, #"{"lines": 20, "tube_curent_ua": 200}"#))
        guard case .unknownKey(let path, let known) = e else { Issue.record("\(e)"); return }
        #expect(path == "tube_curent_ua")
        #expect(known.contains("tube_current_ua"), "\(known)")
        #expect(e.description.contains("unknown parameter 'tube_curent_ua'"), "\(e)")
        let ok = try StrictDecoder.decode(ScanRunParams.self, from: try json(#"{"lines": 20, "tube_current_ua": 200}"#))
        #expect(ok.lines == 20 && ok.tubeCurrentUA == 200)
    }

    @Test func unknownKeysAreFoundAtAnyDepth() throws {
        let answers = #"{"exam_id": 3, "answers": {"pregnacy": "no"}}"#
        #expect(try failure(ExamChecklistParams.self, answers)?.description.contains("'answers.pregnacy'") == true)
        let patient = #"{"patient": {"id": "P1", "name": "A", "sex": "female", "birth_date": "1950-01-01", "nickname": "x"}, "referral": "r"}"#
        #expect(try failure(ExamCreateParams.self, patient)?.description.contains("'patient.nickname'") == true)
        let sites = #"{"exam_id": 3, "answers": {"metal": ["left_hip"], "recent_fracture": []}}"#
        #expect(try failure(ExamChecklistParams.self, sites) == nil)
    }

    @Test func aMethodWithoutParametersTakesNone() throws {
        #expect(try failure(NoParams.self, "{}") == nil)
        #expect(try failure(NoParams.self, #"{"verbose": true}"#)?.description.contains("'verbose'") == true)
        #expect(try failure(NoParams.self, "[1]") != nil)
        // events.subscribe: `exams` or nothing; a misspelt key is refused, not ignored.
        #expect(try failure(SubscribeParams.self, "{}") == nil)
        #expect(try failure(SubscribeParams.self, #"{"exams": true}"#) == nil)
        #expect(try failure(SubscribeParams.self, #"{"exam": true}"#)?.description.contains("'exam'") == true)
        #expect(try failure(SubscribeParams.self, #"{"exams": "yes"}"#)?.description.contains("'exams'") == true)
    }

    @Test func typesRangesAndMissingFieldsAreNamed() throws {
        #expect(try failure(ExamIDParams.self, #"{"exam_id": "7"}"#)?.description.contains("'exam_id'") == true)
        #expect(try failure(ExamIDParams.self, #"{"exam_id": 7.5}"#)?.description.contains("'exam_id'") == true)
        #expect(try failure(ExamIDParams.self, "{}")?.description.contains("missing 'exam_id'") == true)
        #expect(try failure(ExamIDParams.self, #"{"exam_id": null}"#)?.description.contains("'exam_id'") == true)
        #expect(try failure(ScanRunParams.self, #"{"lines_per_frame": 70000}"#)?.description.contains("'lines_per_frame'") == true)
        #expect(try failure(ScanRunParams.self, #"{"lines": -1}"#)?.description.contains("'lines'") == true)
        #expect(try failure(ScanRunParams.self, #"{"x_um": 1e300}"#) != nil)
        #expect(try failure(ExamRepeatParams.self, #"{"exam_id": 1, "site": "left_knee"}"#)?.description.contains("'site'") == true)
        // Optional fields may be null or absent.
        #expect(try failure(ScanRunParams.self, #"{"lines": null}"#) == nil)
    }

    /// An abort's cause is one of the five, or absent (null): a wrong one is refused naming
    /// them, and a number or an object is no cause either.
    @Test func anAbortsCauseIsOneOfTheFiveOrNone() throws {
        let wrong = try #require(try failure(ExamAbortParams.self, #"{"exam_id": 1, "cause": "patient_unwell"}"#))
        #expect(wrong.description.contains("'cause'") && wrong.description.contains("patient_condition")
                && wrong.description.contains("wrong_worklist_entry"), "\(wrong)")
        #expect(try failure(ExamAbortParams.self, #"{"exam_id": 1, "cause": 2}"#)?.description.contains("'cause'") == true)
        #expect(try failure(ExamAbortParams.self, #"{"exam_id": 1, "cause": {"code": "110513"}}"#) != nil)
        #expect(try StrictDecoder.decode(ExamAbortParams.self, from: try json(#"{"exam_id": 1, "cause": null}"#)).cause == nil)
        #expect(try StrictDecoder.decode(ExamAbortParams.self, from: try json(#"{"exam_id": 1}"#)).cause == nil)
        #expect(try StrictDecoder.decode(ExamAbortParams.self, from: try json(#"{"exam_id": 1, "cause": "patient_refused"}"#)).cause == .patientRefused)
    }

    /// The console's answer: the number shown or the name, any case, spaces for underscores.
    @Test func aTechnologistsAnswerNamesACause() {
        #expect(AbortCause(answer: "1") == .equipmentFailure)
        #expect(AbortCause(answer: " 5 ") == .other)
        #expect(AbortCause(answer: "Patient refused") == .patientRefused)
        #expect(AbortCause(answer: "wrong-worklist-entry") == .wrongWorklistEntry)
        for nonsense in ["0", "6", "-1", "patient", "", "1.0", "🙂"] { #expect(AbortCause(answer: nonsense) == nil, "\(nonsense)") }
    }

    /// A field that takes any JSON takes any keys; objects inside arrays are checked; a key
    /// with a dot in it is its own key, not a path.
    @Test func freeFormFieldsArraysAndDottedKeys() throws {
        struct Free: Codable { var note: JSONValue; var items: [ExamIDParams] }
        #expect(try failure(Free.self, #"{"note": {"anything": {"deep": 1}}, "items": [{"exam_id": 1}]}"#) == nil)
        let inArray = try #require(try failure(Free.self, #"{"note": 1, "items": [{"exam_id": 1}, {"exam_id": 2, "x": 0}]}"#))
        #expect(inArray.description.contains("'items.1.x'"), "\(inArray)")
        struct Dotted: Codable { var a: ExamIDParams; enum CodingKeys: String, CodingKey { case a = "a.b" } }
        #expect(try failure(Dotted.self, #"{"a.b": {"exam_id": 1}}"#) == nil)
        #expect(try failure(Dotted.self, #"{"a.b": {"exam_id": 1, "c": 2}}"#) != nil)
        // Integers beyond 2^53 may have been rounded on the way: refused, not taken for another.
        #expect(try failure(ExamIDParams.self, #"{"exam_id": 9007199254740993}"#) != nil)
        #expect(try failure(ExamIDParams.self, #"{"exam_id": 9007199254740992}"#) != nil)
        #expect(try failure(ExamIDParams.self, #"{"exam_id": 9007199254740991}"#) == nil)
    }

    /// Every parameter type decodes its own encoding (the CLI sends exactly what it builds).
    @Test func everyParameterTypeRoundTrips() throws {
        func roundTrip<T: Codable & Equatable>(_ v: T) throws {
            #expect(try StrictDecoder.decode(T.self, from: try JSONValue(encoding: v)) == v)
        }
        var answers = ChecklistAnswers()
        answers.pregnancy = .no; answers.contrast = .noStudy; answers.metal = [.leftHip]; answers.heightCm = 160
        try roundTrip(ExamChecklistParams(examID: 4, answers: answers))
        try roundTrip(ExamCreateParams(patient: PatientRecord(id: "P", name: "N", sex: .male, birthDate: "1950-02-03"), referral: "r"))
        try roundTrip(ScanRunParams(mode: "dual", xUm: 1, yStartUm: 2, lines: 3, lineStepUm: 4, linePeriodUs: 5, tubeCurrentUA: 6,
                                    linesPerFrame: 7, role: "qc", region: "ap_spine", phantom: "/p", withReferences: true))
        try roundTrip(MoveParams(xUm: 1, yUm: 2, armAngleDeg: 90))
        try roundTrip(CalibrateParams(phantom: "/p", lineStepUm: 500))
        try roundTrip(MetricsParams(format: .prometheus))
        try roundTrip(ExamSkipParams(examID: 1, site: .rightHip, reason: "prosthesis"))
        try roundTrip(ExamRepeatParams(examID: 2, site: .lateralSpine))
        try roundTrip(ExamRepeatParams(examID: 2))
        try roundTrip(ExamAbortParams(examID: 3, reason: "patient unwell"))
        try roundTrip(ExamAbortParams(examID: 3, reason: "tube arc fault", cause: .equipmentFailure))
        try roundTrip(ExamAddParams(examID: 4, site: .leftHip))
        try roundTrip(ExamListParams(limit: 5))
        try roundTrip(LogParams(offset: 100, maxBytes: 512))
        try roundTrip(ReportParams(captures: 2))
        try roundTrip(NoParams())
        var dated = ChecklistAnswers()
        dated.contrast = .on(try #require(CalendarDay("2026-11-30"))); dated.nuclearMedicine = .noStudy; dated.recentFracture = []
        try roundTrip(ExamChecklistParams(examID: 5, answers: dated))
    }

    /// The arm angle goes to the device in tenths of a degree; anything finer is refused.
    @Test func armAngleInDegrees() throws {
        #expect(try MoveParams(xUm: 0, yUm: 0, armAngleDeg: 90).armAngleX10.get() == 900)
        #expect(try MoveParams(xUm: 0, yUm: 0, armAngleDeg: 12.3).armAngleX10.get() == 123)
        // The arm's range, ICD §3: 0° to 90°.
        if case .success = MoveParams(xUm: 0, yUm: 0, armAngleDeg: -0.1).armAngleX10 { Issue.record("-0.1° accepted") }
        if case .success = MoveParams(xUm: 0, yUm: 0, armAngleDeg: 90.1).armAngleX10 { Issue.record("90.1° accepted") }
        if case .success = MoveParams(xUm: 0, yUm: 0, armAngleDeg: 12.34).armAngleX10 { Issue.record("12.34° accepted") }
        if case .success = MoveParams(xUm: 0, yUm: 0, armAngleDeg: 4000).armAngleX10 { Issue.record("4000° accepted") }
    }

    /// Found by fuzzing (Tests/Fuzz/crashes/rpc): a response whose id is a number no integer
    /// can hold trapped the client converting it. It is now a response to no request of ours.
    @Test func aResponseIdNoIntegerCanHoldMatchesNoRequest() {
        let huge = #"{"jsonrpc":"2.0","id":5222222222222222222222222222222222222222,"result":{}}"#
        #expect(RPCMessage.parse(Array(huge.utf8)) == .response(id: nil, result: .success(.object([:]))))
        let fraction = #"{"jsonrpc":"2.0","id":1.5,"result":{}}"#
        #expect(RPCMessage.parse(Array(fraction.utf8)) == .response(id: nil, result: .success(.object([:]))))
        let ours = #"{"jsonrpc":"2.0","id":42,"result":{}}"#
        #expect(RPCMessage.parse(Array(ours.utf8)) == .response(id: .number(42), result: .success(.object([:]))))
    }
}
