package com.tinybeauty.demo

import android.content.Context
import android.os.SystemClock
import android.util.Log
import org.tensorflow.lite.DataType
import org.tensorflow.lite.Interpreter
import org.tensorflow.lite.gpu.CompatibilityList
import org.tensorflow.lite.gpu.GpuDelegate
import java.io.FileInputStream
import java.nio.ByteBuffer
import java.nio.ByteOrder
import java.nio.FloatBuffer
import java.nio.MappedByteBuffer
import java.nio.channels.FileChannel
import kotlin.math.roundToInt

/**
 * `tinybeauty.tflite` in a LiteRT [Interpreter]: aligned crop in, made-up crop out.
 *
 * The I/O convention is the export's model card (`export/report.py`, `model_card.json` "io"; layout from
 * `export/tflite.py`): one NHWC float32 input `[1, H, W, C]`, values in [0, 1]: RGB (pixel / 255) in channels
 * 0..2, and for a region-input model (C = 7 or 8, the card's `io.region_input`) the crop's 4 soft region
 * masks, and with C = 8 the cheeks, after them ([RegionMasks], in the card's channel order); the output is `[1, H, W, 3]`, RGB (multiply by 255
 * and round). H, W and C are read from the input tensor, so a model exported at another crop size, or an
 * RGB-only one (C = 3, older exports), works unchanged. int8/uint8 I/O (a differently exported file) is
 * (de)quantised with the tensor's own scale and zero point, as `student/runtime.py` does.
 *
 * CPU by default (XNNPACK, [NUM_THREADS] threads); [requestGpu] adds the GPU delegate when the device
 * supports it and falls back to the CPU with a [note] otherwise. Input/output buffers are allocated once;
 * [run] allocates nothing. Create, use and close it on one thread (the GPU delegate requires that).
 */
class MakeupModel(model: ByteBuffer, requestGpu: Boolean) : AutoCloseable {

    /** Whether the GPU was asked for (a toggle compares against this, not against [usingGpu]). */
    val gpuRequested = requestGpu

    var usingGpu = false
        private set

    /** Anything the user should know (GPU fallback, unexpected I/O type); null when all is as documented. */
    var note: String? = null
        private set

    private var gpuDelegate: GpuDelegate? = null
    private val interpreter: Interpreter = createInterpreter(model, requestGpu)

    /** The signature exposing `image` -> `made_up` (litert-torch names them after the export's NamedIO). */
    private val signatureKey: String? = interpreter.signatureKeys.firstOrNull { key ->
        INPUT_NAME in interpreter.getSignatureInputs(key) && OUTPUT_NAME in interpreter.getSignatureOutputs(key)
    }

    /** Side of the square crop the model takes, read from the input tensor's shape. */
    val size: Int

    /** Input channels, read from the input tensor's shape: [CHANNELS] (RGB), or RGB + [REGION_CHANNELS] masks
     *  (+ [CHEEK_CHANNELS]). */
    val channels: Int

    /** The masks the model reads after RGB: 0, [REGION_CHANNELS], or those and the cheeks. */
    val maskChannels: Int

    /** True when the model reads the crop's region masks after RGB: [run] needs them. */
    val regionInput: Boolean

    private val inputType: DataType
    private val outputType: DataType
    private val inputScale: Float
    private val inputZero: Int
    private val outputScale: Float
    private val outputZero: Int
    private val input: ByteBuffer
    private val output: ByteBuffer
    private val inputFloats: FloatBuffer
    private val outputFloats: FloatBuffer
    private val inputs: Map<String, Any>
    private val outputs: Map<String, Any>

    /** Wall time of the last [run]'s interpreter call, milliseconds. */
    var lastInferenceMs = 0f
        private set

    init {
        val key = signatureKey
        val inTensor = if (key != null) interpreter.getInputTensorFromSignature(INPUT_NAME, key) else interpreter.getInputTensor(0)
        val outTensor = if (key != null) interpreter.getOutputTensorFromSignature(OUTPUT_NAME, key) else interpreter.getOutputTensor(0)
        val shape = inTensor.shape()
        check(shape.size == 4 && shape[0] == 1 && shape[3] in INPUT_CHANNELS && shape[1] == shape[2] && shape[1] > 0) {
            "$MODEL_ASSET: expected a $LAYOUT input [1, H, H, C], C one of ${INPUT_CHANNELS.joinToString()} " +
                "(model_card.json io), got ${shape.contentToString()}" +
                if (shape.size == 4 && shape[3] > CHANNELS + REGION_CHANNELS + CHEEK_CHANNELS) {
                    ": a 10- or 11-channel model reads the look prior (model_card.json io.prior_input, " +
                        "look_prior.json), which this app does not paint yet"
                } else ""
        }
        val outShape = intArrayOf(1, shape[1], shape[2], CHANNELS)
        check(outTensor.shape().contentEquals(outShape)) {
            "$MODEL_ASSET: output shape ${outTensor.shape().contentToString()} is not ${outShape.contentToString()}"
        }
        size = shape[1]
        channels = shape[3]
        maskChannels = channels - CHANNELS
        regionInput = maskChannels > 0
        inputType = inTensor.dataType()
        outputType = outTensor.dataType()
        for (type in arrayOf(inputType, outputType)) {
            check(type == DataType.FLOAT32 || type == DataType.UINT8 || type == DataType.INT8) {
                "$MODEL_ASSET: unsupported I/O type $type (expected $IO_DTYPE)"
            }
        }
        if (inputType != DataType.FLOAT32 || outputType != DataType.FLOAT32) {
            note = listOfNotNull(note, "model I/O is $inputType/$outputType, not $IO_DTYPE: (de)quantising")
                .joinToString("; ")
        }
        inputScale = inTensor.quantizationParams().scale
        inputZero = inTensor.quantizationParams().zeroPoint
        outputScale = outTensor.quantizationParams().scale
        outputZero = outTensor.quantizationParams().zeroPoint
        input = ByteBuffer.allocateDirect(inTensor.numBytes()).order(ByteOrder.nativeOrder())
        output = ByteBuffer.allocateDirect(outTensor.numBytes()).order(ByteOrder.nativeOrder())
        inputFloats = input.asFloatBuffer()
        outputFloats = output.asFloatBuffer()
        inputs = mapOf(INPUT_NAME to input)
        outputs = mapOf(OUTPUT_NAME to output)
    }

    /**
     * Run the model on [crop] (`size * size` ARGB_8888 ints, the aligned crop) into [out] (same shape). A
     * region-input model also takes [masks]: the crop's [maskChannels] soft region masks (`size * size`
     * floats each) in the card's `io.region_input.channels` order ([RegionMasks.inOrder]); an RGB model none.
     * Returns the interpreter's wall time in milliseconds.
     */
    fun run(crop: IntArray, masks: Array<FloatArray>?, out: IntArray): Float {
        require(crop.size == size * size && out.size == size * size) { "crop must be $size x $size" }
        if (regionInput) {
            require(masks != null && masks.size == maskChannels && masks.all { it.size == size * size }) {
                "this model takes the crop's $maskChannels region masks ($size x $size) after RGB"
            }
        } else {
            require(masks == null) { "this model takes RGB only" }
        }
        fillInput(crop, masks ?: NO_MASKS)
        input.rewind()
        output.rewind()
        val t0 = SystemClock.elapsedRealtimeNanos()
        val key = signatureKey
        if (key != null) interpreter.runSignature(inputs, outputs, key) else interpreter.run(input, output)
        lastInferenceMs = (SystemClock.elapsedRealtimeNanos() - t0) / 1e6f
        readOutput(out)
        return lastInferenceMs
    }

    /**
     * NHWC, per pixel RGB in [VALUE_MIN, VALUE_MAX] (`crop.astype(float32) / 255` in `student/apply.py`), then
     * the [masks] (none for an RGB model): `student/model.py` `model_input`, channels last.
     */
    private fun fillInput(crop: IntArray, masks: Array<FloatArray>) {
        val shifts = CHANNEL_SHIFTS
        var j = 0
        if (inputType == DataType.FLOAT32) {
            val f = inputFloats
            for (i in crop.indices) {
                val p = crop[i]
                for (c in 0 until CHANNELS) {
                    f.put(j++, VALUE_MIN + ((p shr shifts[c]) and 0xFF) * PIXEL_TO_VALUE)
                }
                for (k in masks.indices) f.put(j++, masks[k][i])
            }
        } else {
            val lo = if (inputType == DataType.UINT8) 0 else -128
            val hi = if (inputType == DataType.UINT8) 255 else 127
            for (i in crop.indices) {
                val p = crop[i]
                for (c in 0 until CHANNELS) {
                    val v = VALUE_MIN + ((p shr shifts[c]) and 0xFF) * PIXEL_TO_VALUE
                    input.put(j++, ((v / inputScale + inputZero).roundToInt().coerceIn(lo, hi)).toByte())
                }
                for (k in masks.indices) {
                    input.put(j++, ((masks[k][i] / inputScale + inputZero).roundToInt().coerceIn(lo, hi)).toByte())
                }
            }
        }
    }

    /** `np.round(np.clip(y, 0, 1) * 255)` back into ARGB ints. */
    private fun readOutput(out: IntArray) {
        val shifts = CHANNEL_SHIFTS
        var j = 0
        for (i in out.indices) {
            var px = ALPHA_MASK
            for (c in 0 until CHANNELS) {
                val v = when (outputType) {
                    DataType.FLOAT32 -> outputFloats.get(j)
                    DataType.UINT8 -> ((output.get(j).toInt() and 0xFF) - outputZero) * outputScale
                    else -> (output.get(j).toInt() - outputZero) * outputScale
                }
                j++
                val clamped = if (v < VALUE_MIN) VALUE_MIN else if (v > VALUE_MAX) VALUE_MAX else v
                px = px or (((clamped - VALUE_MIN) * VALUE_TO_PIXEL + 0.5f).toInt().coerceAtMost(255) shl shifts[c])
            }
            out[i] = px
        }
    }

    private fun createInterpreter(model: ByteBuffer, requestGpu: Boolean): Interpreter {
        if (requestGpu) {
            try {
                val compatibility = CompatibilityList()
                try {
                    if (compatibility.isDelegateSupportedOnThisDevice) {
                        val delegate = GpuDelegate(compatibility.bestOptionsForThisDevice)
                        try {
                            val gpu = Interpreter(model, cpuOptions().addDelegate(delegate))
                            gpuDelegate = delegate
                            usingGpu = true
                            return gpu
                        } catch (e: Exception) {
                            delegate.close()
                            throw e
                        }
                    }
                    note = "GPU delegate not supported on this device: running on the CPU"
                } finally {
                    compatibility.close()
                }
            } catch (e: Exception) {
                Log.w(TAG, "GPU delegate failed, using the CPU", e)
                note = "GPU delegate failed (${e.javaClass.simpleName}): running on the CPU"
            } catch (e: LinkageError) {  // litert-gpu's native library or classes missing on this build/device
                Log.w(TAG, "GPU delegate unavailable, using the CPU", e)
                note = "GPU delegate unavailable (${e.javaClass.simpleName}): running on the CPU"
            }
        }
        return Interpreter(model, cpuOptions())
    }

    private fun cpuOptions(): Interpreter.Options =
        Interpreter.Options().setNumThreads(NUM_THREADS).setUseXNNPACK(true)

    /** e.g. "CPU XNNPACK x4" or "GPU". */
    fun backendLabel(): String = if (usingGpu) "GPU delegate" else "CPU XNNPACK x$NUM_THREADS"

    override fun close() {
        interpreter.close()
        gpuDelegate?.close()
        gpuDelegate = null
    }

    companion object {
        private const val TAG = "MakeupModel"

        /** Copied by `make android-assets` from the export folder (export.formats.FORMATS["tflite"]). */
        const val MODEL_ASSET = "tinybeauty.tflite"

        // ---- The model card's I/O contract; tests/test_android_demo.py fails when they drift apart. ----

        /** Signature names (export/onnx.py INPUT_NAME / OUTPUT_NAME, used by export/tflite.py). */
        const val INPUT_NAME = "image"
        const val OUTPUT_NAME = "made_up"

        /** export/tflite.py LAYOUT: the channel-last wrapper makes the file NHWC in and out. */
        const val LAYOUT = "NHWC"

        /** model_card.json io: dtype, color, value_range. */
        const val IO_DTYPE = "float32"
        const val COLOR_ORDER = "RGB"
        const val VALUE_MIN = 0.0f
        const val VALUE_MAX = 1.0f

        /** Colour channels: the output's, and the input's first ones (io.region_input.first_channel follows). */
        const val CHANNELS = 3

        /** Region masks a region-input model reads after the colour channels (student/model.py REGION_CHANNELS). */
        const val REGION_CHANNELS = 4

        /** The cheeks, a mask after the region masks (makeup.gate.INPUT_MASKS; student/model.py cheek_input). */
        const val CHEEK_CHANNELS = 1

        /** The input channel counts the app can feed: RGB; RGB + the region masks; RGB + those and the cheeks
         *  (student/runtime.py CHANNELS). */
        val INPUT_CHANNELS = intArrayOf(CHANNELS, CHANNELS + REGION_CHANNELS, CHANNELS + REGION_CHANNELS + CHEEK_CHANNELS)

        /** Where R, G and B sit in an ARGB_8888 int, in COLOR_ORDER: the tensor's channel c is
         *  `(pixel shr CHANNEL_SHIFTS[c]) and 0xFF`. */
        val CHANNEL_SHIFTS = intArrayOf(16, 8, 0)

        const val NUM_THREADS = 4

        private const val PIXEL_TO_VALUE = (VALUE_MAX - VALUE_MIN) / 255f
        private const val VALUE_TO_PIXEL = 255f / (VALUE_MAX - VALUE_MIN)
        private const val ALPHA_MASK = -0x1000000  // 0xFF000000
        private val NO_MASKS = emptyArray<FloatArray>()

        fun hasAsset(context: Context, name: String = MODEL_ASSET): Boolean =
            context.assets.list("")?.contains(name) == true

        /** Memory-map the model from assets (needs `noCompress += "tflite"` in app/build.gradle.kts). */
        fun mapAsset(context: Context, name: String = MODEL_ASSET): MappedByteBuffer =
            context.assets.openFd(name).use { fd ->
                FileInputStream(fd.fileDescriptor).use { stream ->
                    stream.channel.map(FileChannel.MapMode.READ_ONLY, fd.startOffset, fd.declaredLength)
                }
            }
    }
}
